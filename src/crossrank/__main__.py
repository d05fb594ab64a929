"""``python -m crossrank``: the same command line as the ``crossrank`` script."""

from crossrank.cli.app import app

if __name__ == "__main__":
    app(prog_name="crossrank")
