"""URL rules every server backend shares: the parts a URL must have, its query parameters
(each once, known ones only), certificate files checked when the settings are read, and
the settings a query carries for dbtool rather than for the driver."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from dbtool.backends.base import ssl_reason
from dbtool.config import parse_seconds
from dbtool.errors import ConfigError


def check_server_url(url: URL, where: str, known: tuple[str, ...]) -> dict[str, Any]:
    """The URL's query, after the checks every server's URL takes: no '@' left in the host
    (an unescaped one in the password), a database, a port in range, and only `known`
    parameters. ConfigError, never quoting the URL (it may hold a password)."""
    if url.host and "@" in url.host:
        raise ConfigError(
            f"{where} has an '@' in its host part; percent-encode '@' in the password as %40"
        )
    if not url.database:
        raise ConfigError(f"{where} names no database (add /dbname after the host)")
    if url.port is not None and not 1 <= url.port <= 65535:
        raise ConfigError(f"{where} has port {url.port}, outside 1-65535")
    query = dict(url.query)
    unknown = sorted(set(query) - set(known))
    if unknown:
        raise ConfigError(
            f"{where} has unsupported parameter(s) {', '.join(unknown)}; "
            f"supported: {', '.join(known)}"
        )
    return query


def single(value: str | tuple[str, ...], key: str, where: str) -> str:
    """A query parameter given once (SQLAlchemy makes a tuple of a repeated one)."""
    if isinstance(value, tuple):
        raise ConfigError(f"{where}: parameter {key} is given more than once")
    return value


def choice(value: str | tuple[str, ...], key: str, choices: tuple[str, ...], where: str) -> str:
    """A URL parameter that must be one of `choices`."""
    chosen = single(value, key, where)
    if chosen not in choices:
        raise ConfigError(f"{where}: {key}={chosen!r} must be one of {', '.join(choices)}")
    return chosen


def take_dbtool_settings(
    query: dict[str, Any], where: str, certificates: dict[str, str]
) -> dict[str, Any]:
    """Remove from `query` what is dbtool's to use rather than the driver's, and return it
    as settings: the certificate files (`certificates`: parameter -> ssl_rootcert, ssl_cert
    or ssl_key), application_name and connect_timeout."""
    extras: dict[str, Any] = {}
    for key, setting in certificates.items():
        if key in query:
            path = Path(single(query.pop(key), key, where)).expanduser()
            if not path.is_file():
                raise ConfigError(f"{where}: {key}={path} is not a readable file")
            extras[setting] = str(path)
    names = {setting: key for key, setting in certificates.items()}
    _check_certificates(extras, where, names)
    if "application_name" in query:
        extras["application_name"] = single(query.pop("application_name"), "application_name",
                                            where)  # fmt: skip
    if "connect_timeout" in query:
        raw = single(query.pop("connect_timeout"), "connect_timeout", where)
        try:
            timeout = parse_seconds(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: connect_timeout={raw!r}: {exc}") from None
        if timeout <= 0:
            raise ConfigError(f"{where}: connect_timeout must be above 0")
        extras["connect_timeout"] = timeout
    return extras


def no_key_password() -> bytes:
    """Without a callback OpenSSL prompts on the terminal for an encrypted key's
    passphrase; dbtool takes no passphrase, so an encrypted key fails to load instead of
    hanging."""
    return b""


def _check_certificates(extras: dict[str, Any], where: str, names: dict[str, str]) -> None:
    """Load the certificate files once while the settings are read, so that a file that is
    not a PEM certificate (or key) is a setting error naming the file, not an SSL error
    without a reason at the first connection."""
    rootcert, cert, key = (extras.get(f"ssl_{k}") for k in ("rootcert", "cert", "key"))
    if key and not cert:
        raise ConfigError(
            f"{where}: {names['ssl_key']} needs {names['ssl_cert']} (the certificate it belongs to)"
        )
    if rootcert:
        try:
            ssl.create_default_context(cafile=rootcert)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"{where}: {names['ssl_rootcert']}={rootcert} holds no usable PEM certificate "
                f"({ssl_reason(exc)})"
            ) from None
    if cert:
        pair = f"{names['ssl_cert']}={cert}" + (f" with {names['ssl_key']}={key}" if key else "")
        try:
            ssl.create_default_context().load_cert_chain(cert, key, password=no_key_password)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"{where}: {pair} is not a PEM certificate and its unencrypted private key "
                f"({ssl_reason(exc)})"
            ) from None
