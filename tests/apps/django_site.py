"""A real Django site's users, exported as a Django developer would.

Run as a script: `python django_site.py DIRECTORY`. It creates a SQLite Django site in
DIRECTORY with one user per password hasher Django ships (each with its default
parameters), a user with an unusable password, then writes the two usual exports:

- auth_user.csv: `sqlite3 -header -csv site.db "SELECT * FROM auth_user"` (0/1 booleans,
  naive UTC timestamps), written with the csv module so that no sqlite3 shell is needed;
- auth_user.json: `manage.py dumpdata auth.user`.

Every user's password is PASSWORDS[hasher]; the unusable one is nopw@example.com.
"""

from __future__ import annotations

import csv
import sqlite3
import sys
from pathlib import Path

HASHERS = {
    "pbkdf2_sha256": "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "pbkdf2_sha1": "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "argon2": "django.contrib.auth.hashers.Argon2PasswordHasher",
    "bcrypt_sha256": "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "bcrypt": "django.contrib.auth.hashers.BCryptPasswordHasher",
    "scrypt": "django.contrib.auth.hashers.ScryptPasswordHasher",
    "md5": "django.contrib.auth.hashers.MD5PasswordHasher",
}
PASSWORDS = {name: f"old {name} password" for name in HASHERS}
# Usernames Django allows that a stricter tool would refuse.
USERNAMES = {"md5": "jo", "scrypt": "john+doe@corp"}


def main(directory: Path) -> None:
    import django
    from django.conf import settings

    database = directory / "site.db"
    settings.configure(
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(database)}},
        PASSWORD_HASHERS=list(HASHERS.values()),
        USE_TZ=True,
    )
    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    for name, password in PASSWORDS.items():
        User.objects.create(
            username=USERNAMES.get(name, f"{name}.user"),
            email=f"{name}@Example.com",  # Django keeps the case it was given
            password=make_password(password, hasher=name),
            first_name="Ada",
            last_name="Lovelace",
            is_staff=name == "argon2",
            is_superuser=name == "pbkdf2_sha256",
            is_active=name != "md5",
        )
    nobody = User.objects.create(username="nopw", email="nopw@example.com", first_name="No")
    nobody.set_unusable_password()
    nobody.save()

    with (
        sqlite3.connect(database) as connection,
        open(directory / "auth_user.csv", "w", newline="") as out,
    ):
        cursor = connection.execute("SELECT * FROM auth_user ORDER BY id")
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([column[0] for column in cursor.description])
        writer.writerows(["" if value is None else value for value in row] for row in cursor)
    call_command("dumpdata", "auth.user", indent=2, output=str(directory / "auth_user.json"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
