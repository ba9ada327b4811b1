"""Interactive sessions on the configured database: its own client (`dbtool dbshell`)
and a Python REPL with the models at hand (`dbtool shell`)."""
