"""The floor for any Typer CLI with Rich help: one command, one option.

`python benchmarks/minimal_typer_app.py --help` is the reference for `dbtool --help`.
"""

import typer

app = typer.Typer()


@app.command()
def hello(name: str = "world") -> None:
    """Say hello."""
    typer.echo(f"hello {name}")


if __name__ == "__main__":
    app()
