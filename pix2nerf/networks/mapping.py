"""StyleGAN2 mapping network: (z, camera label) -> intermediate latents w, with truncation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pix2nerf.layers import Activation, FullyConnectedLayer, normalize_2nd_moment


class MappingNetwork(nn.Module):
    """Map a latent z (B, z_dim) and a conditioning label c (B, c_dim) to w (B, num_ws, w_dim).

    The label is embedded by a linear layer and both inputs are normalised to unit second moment before
    the MLP (lr multiplier 0.01, as StyleGAN2). ``w_avg`` tracks the mean w during training
    (``update_w_avg=True``) and is the centre of truncation.

    Args:
        z_dim, c_dim, w_dim: latent, label (0 = unconditional) and intermediate latent sizes.
        num_ws: how many copies of w the synthesis network consumes.
        num_layers: MLP depth.
        embed_features, layer_features: label embedding and hidden widths (default w_dim).
        lr_multiplier: learning-rate multiplier of the MLP layers.
        w_avg_beta: decay of the tracked w average.
    """

    w_avg: Tensor

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: Activation = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.998,
    ) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        embed_features = 0 if c_dim == 0 else (w_dim if embed_features is None else embed_features)
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for index in range(num_layers):
            layer = FullyConnectedLayer(
                features[index], features[index + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{index}", layer)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self,
        z: Tensor,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool = False,
    ) -> Tensor:
        """z (B, z_dim), c (B, c_dim) -> ws (B, num_ws, w_dim).

        ``truncation_psi`` < 1 pulls w toward ``w_avg`` (for the first ``truncation_cutoff`` ws only, if set).
        """
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (B, {self.z_dim}), got {tuple(z.shape)}")
        parts = []
        if self.z_dim > 0:
            parts.append(normalize_2nd_moment(z.float()))
        if self.c_dim > 0:
            if c is None or c.shape != (z.shape[0], self.c_dim):
                got = None if c is None else tuple(c.shape)
                raise ValueError(f"c must have shape ({z.shape[0]}, {self.c_dim}), got {got}")
            parts.append(normalize_2nd_moment(self.embed(c.float())))
        x = torch.cat(parts, dim=1)
        for index in range(self.num_layers):
            x = getattr(self, f"fc{index}")(x)
        if update_w_avg:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], truncation_psi)
        return x


class DecoupledMapping(nn.Module):
    """Two mapping networks, geometry and appearance: z = [z_geo | z_app] -> ws = [ws_geo | ws_app].

    z (B, geometry_z_dim + appearance_z_dim) holds the geometry latent first; the ws it returns,
    (B, num_ws_geometry + num_ws_appearance, w_dim), hold the geometry ws first. Both networks see the
    same conditioning label. Truncation (psi, cutoff) applies to each branch, with its own average.
    """

    def __init__(
        self,
        geometry_z_dim: int,
        appearance_z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws_geometry: int,
        num_ws_appearance: int,
        num_layers: int = 8,
    ) -> None:
        super().__init__()
        self.geometry = MappingNetwork(geometry_z_dim, c_dim, w_dim, num_ws_geometry, num_layers)
        self.appearance = MappingNetwork(appearance_z_dim, c_dim, w_dim, num_ws_appearance, num_layers)
        self.z_dim, self.c_dim, self.w_dim = geometry_z_dim + appearance_z_dim, c_dim, w_dim
        self.num_ws = num_ws_geometry + num_ws_appearance

    @property
    def w_avg(self) -> Tensor:
        """(num_ws, w_dim): each w's running average (geometry rows, then appearance rows)."""
        geometry, appearance = self.geometry, self.appearance
        return torch.cat([geometry.w_avg.expand(geometry.num_ws, -1), appearance.w_avg.expand(appearance.num_ws, -1)])

    def forward(
        self,
        z: Tensor,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool = False,
    ) -> Tensor:
        """z (B, z_dim), c (B, c_dim) -> ws (B, num_ws, w_dim); see the class docstring for the layout."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (B, {self.z_dim}), got {tuple(z.shape)}")
        z_geometry, z_appearance = z.split([self.geometry.z_dim, self.appearance.z_dim], dim=1)
        return torch.cat(
            [
                self.geometry(z_geometry, c, truncation_psi, truncation_cutoff, update_w_avg),
                self.appearance(z_appearance, c, truncation_psi, truncation_cutoff, update_w_avg),
            ],
            dim=1,
        )
