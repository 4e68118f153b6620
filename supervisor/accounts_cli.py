"""`custody accounts add|set|disable|enable|list`: the site's staff directory.

Works on a provisioning directory (`--out`, as made by `custody provision`): changes
supervisor/accounts.json (0600, with its history) and re-renders the broker's password file
and ACL. Every change is made by a proven admin (`--by ADMIN`, their password from
`--by-password-file` or a prompt) and recorded in the history; the running supervisor
re-reads the file and journals each change. Passwords come from a file or a prompt, never
from the command line. Install broker/passwords and broker/acl and reload Mosquitto
(`systemctl reload mosquitto`) for broker logins to follow.
"""

import argparse
import getpass
import sys
from pathlib import Path

from .accounts import ROLES, AccountError, AccountFile

ACCOUNTS_FILE = "supervisor/accounts.json"


def _password(path: str | None, prompt: str, confirm: bool) -> str:
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise AccountError(f"{path}: cannot read the password file ({e.strerror})") from None
    if not sys.stdin.isatty():
        raise AccountError(f"{prompt}: no terminal to prompt on (give a password file)")
    first = getpass.getpass(f"{prompt}: ")
    if confirm and getpass.getpass(f"{prompt} (again): ") != first:
        raise AccountError("the two passwords differ")
    return first


def _roles(text: str | None) -> list[str] | None:
    return None if text is None else [r.strip() for r in text.split(",") if r.strip()]


def _run(args: argparse.Namespace) -> int:
    from custody.provisioning import ProvisionError, render_staff

    out = Path(args.out)
    try:
        f = AccountFile(out / ACCOUNTS_FILE)
        if args.accounts_command == "list":
            for a in f.accounts():
                print(f"{a.id:20} {'enabled ' if a.enabled else 'DISABLED'} {a.sex} "
                      f"{','.join(sorted(a.roles)):40} {a.name}")
            return 0
        admin = f.verify(args.by, _password(args.by_password_file,
                                            f"password for {args.by}", False))
        if admin is None or "admin" not in admin.roles:
            print(f"accounts: {args.by!r} is not an enabled admin with that password",
                  file=sys.stderr)
            return 1
        if args.accounts_command == "add":
            pw = _password(args.password_file, f"new password for {args.id}", True)
            a = f.add(admin.id, args.id, args.name, args.sex, _roles(args.roles) or [], pw)
        elif args.accounts_command == "set":
            new_pw = (_password(args.password_file, f"new password for {args.id}", True)
                      if args.password_file or args.new_password else None)
            a = f.set(admin.id, args.id, args.name, args.sex, _roles(args.roles), new_pw)
        else:
            if args.id == admin.id and args.accounts_command == "disable":
                raise AccountError("an admin may not disable their own account")
            a = f.set_enabled(admin.id, args.id, args.accounts_command == "enable")
        f.save()
        render_staff(out)
    except (AccountError, ProvisionError) as e:
        print(f"accounts: {e}", file=sys.stderr)
        return 1
    print(f"{a.id}: {args.accounts_command} done ({'enabled' if a.enabled else 'disabled'}, "
          f"roles {','.join(sorted(a.roles))}). Install {out}/broker/passwords and "
          f"{out}/broker/acl, then `systemctl reload mosquitto`; the supervisor picks up "
          f"{out}/{ACCOUNTS_FILE} by itself.")
    return 0


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `custody accounts`."""
    p = sub.add_parser("accounts", help="add, change, disable or list staff accounts")
    s = p.add_subparsers(dest="accounts_command", metavar="ACTION", required=True)
    for name, text in (("add", "create an account"), ("set", "change an account"),
                       ("disable", "disable an account (kept, with its history)"),
                       ("enable", "re-enable a disabled account"), ("list", "list accounts")):
        c = s.add_parser(name, help=text)
        c.add_argument("--out", required=True, help="the provisioning directory")
        if name != "list":
            c.add_argument("--by", required=True, help="the admin making the change")
            c.add_argument("--by-password-file", help="the admin's password (else a prompt)")
            c.add_argument("--id", required=True, help="account id ([a-z0-9-])")
        if name in ("add", "set"):
            c.add_argument("--name", required=name == "add", help="display name")
            c.add_argument("--sex", required=name == "add", choices=("f", "m", "x"))
            c.add_argument("--roles", required=name == "add",
                           help=f"comma-separated, of {', '.join(ROLES)}")
            c.add_argument("--password-file", help="the account's password (else a prompt)")
        if name == "set":
            c.add_argument("--new-password", action="store_true",
                           help="prompt for a new password")
        c.set_defaults(func=_run)
