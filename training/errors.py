"""The one exception family every layer raises for problems a user can fix.

It lives in the lowest layer (`training`) so that `index` and `app` can share it without
importing upwards. `code` is stable and machine-readable; the message names the problem.
"""


class AttribError(Exception):
    code = "attrib_error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class EncoderError(AttribError):
    code = "encoder_error"
    status = 500


def run_as_script(main) -> None:
    """`python -m training.X`: run main(); a user-fixable error prints one line and exits 1."""
    import sys

    try:
        sys.exit(main())
    except AttribError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(1)
