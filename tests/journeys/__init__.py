"""Journeys through real, unmodified applications, each a script run on a checkout of the
application (not part of this repository): see docs/development.md, "Real applications"."""
