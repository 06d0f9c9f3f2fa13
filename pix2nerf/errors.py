"""Package-wide errors: a base module every layer may import, so lower layers (``io``, ``data``) need not import
``inference`` for an exception class."""


class InputError(ValueError):
    """A user's input cannot be used; the message says what is wrong and how to fix it.

    Tools catch it, print the message and exit with ``pix2nerf.inference.INPUT_ERROR_EXIT_CODE`` instead of a traceback.
    """
