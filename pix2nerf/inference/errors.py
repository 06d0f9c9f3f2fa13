"""Errors about what a user passed in (files, images, checkpoints), each naming the problem and the fix."""


class InputError(ValueError):
    """A user's input cannot be used; the message says what is wrong and how to fix it.

    Tools catch it, print the message and exit with :data:`INPUT_ERROR_EXIT_CODE` instead of a traceback.
    """


INPUT_ERROR_EXIT_CODE = 2
