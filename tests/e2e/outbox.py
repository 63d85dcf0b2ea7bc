"""Reading the `.eml` files `dge-idp dev` writes to `<data-dir>/outbox/`."""

from __future__ import annotations

import email
import html
import re
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import getaddresses
from pathlib import Path
from typing import Callable

MAIL_TIMEOUT_SECS = 15.0

CONFIRM_SUBJECT = "Confirmez votre adresse électronique – DataGrandEst"
ACTIVATED_SUBJECT = "Votre compte DataGrandEst est activé"

_CONFIRM_LINK = re.compile(r"https?://[^\s\"'<>]+/confirm\?token=[^\s\"'<>]+")


@dataclass(frozen=True)
class Mail:
    path: Path
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def body(self) -> str:
        return body_text(self.message)


def read_message(path: Path) -> EmailMessage:
    with path.open("rb") as file:
        return email.message_from_binary_file(file, policy=default_policy)


def recipients(message: EmailMessage) -> set[str]:
    headers = message.get_all("To", []) + message.get_all("Cc", [])
    return {address.lower() for _, address in getaddresses([str(h) for h in headers])}


def mails_to(outbox: Path, address: str) -> list[Mail]:
    """Emails sent to `address`, oldest first."""
    if not outbox.is_dir():
        return []
    paths = sorted(outbox.glob("*.eml"), key=lambda path: (path.stat().st_mtime_ns, path.name))
    mails = [Mail(path, read_message(path)) for path in paths]
    return [mail for mail in mails if address.lower() in recipients(mail.message)]


def wait_for_mail(outbox: Path, address: str, where: Callable[[Mail], bool], what: str) -> Mail:
    """The newest email to `address` for which `where` holds, waiting for it a while."""
    deadline = time.monotonic() + MAIL_TIMEOUT_SECS
    while True:
        matching = [mail for mail in mails_to(outbox, address) if where(mail)]
        if matching:
            return matching[-1]
        if time.monotonic() > deadline:
            subjects = [mail.subject for mail in mails_to(outbox, address)]
            raise AssertionError(
                f"no {what} to {address} in {outbox} after {MAIL_TIMEOUT_SECS:.0f} s;"
                f" subjects found for that address: {subjects}"
            )
        time.sleep(0.1)


def wait_for_subject(outbox: Path, address: str, subject: str) -> Mail:
    return wait_for_mail(outbox, address, lambda mail: mail.subject == subject, repr(subject))


def body_text(message: EmailMessage) -> str:
    """The plain-text body, else the HTML body unescaped (transfer encodings decoded)."""
    plain = message.get_body(preferencelist=("plain",))
    if plain is not None:
        return plain.get_content()
    rich = message.get_body(preferencelist=("html",))
    assert rich is not None, f"email {message['Subject']!r} has no text or HTML body"
    return html.unescape(rich.get_content())


def confirmation_links(mail: Mail) -> list[str]:
    return _CONFIRM_LINK.findall(mail.body)


def confirmation_link(mail: Mail) -> str:
    links = confirmation_links(mail)
    assert links, f"no /confirm?token= link in email {mail.subject!r}:\n{mail.body}"
    return links[0]
