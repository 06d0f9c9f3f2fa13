"""An interactive web viewer: upload a face, orbit and zoom around its 3D reconstruction, export views,
orbit videos and meshes. Standard library HTTP server, rendering with torch on the server
(``tools/viewer.py`` runs it)."""

from pix2nerf.viewer.server import ViewerServer, make_server
from pix2nerf.viewer.session import View, ViewerOptions, ViewerSession

__all__ = ["View", "ViewerOptions", "ViewerServer", "ViewerSession", "make_server"]
