"""A person's browser, reduced to what the tests need: cookies, forms and page text."""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from bs4 import BeautifulSoup, Tag

HTTP_TIMEOUT_SECS = 15
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
_CONTROLS = ["input", "select", "textarea"]


class LoopbackCookiePolicy(DefaultCookiePolicy):
    """Sends `Secure` cookies to loopback over plain HTTP, as browsers do."""

    def return_ok_secure(self, cookie, request):
        host = urlsplit(request.get_full_url()).hostname
        return host in _LOOPBACK_HOSTS or super().return_ok_secure(cookie, request)


def browser() -> requests.Session:
    """A fresh browser: its own cookies, no proxy, French first."""
    http = requests.Session()
    http.trust_env = False
    http.cookies.set_policy(LoopbackCookiePolicy())
    http.headers["Accept-Language"] = "fr-FR,fr;q=0.9"
    return http


def get(http: requests.Session, url: str) -> requests.Response:
    """GET without following redirects: the tests read Location themselves."""
    return http.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT_SECS)


def post(http: requests.Session, url: str, data: dict) -> requests.Response:
    return http.post(url, data=data, allow_redirects=False, timeout=HTTP_TIMEOUT_SECS)


def parse(response: requests.Response) -> BeautifulSoup:
    return BeautifulSoup(response.text, "html.parser")


def text_of(element: Tag | BeautifulSoup) -> str:
    """Visible text with French typographic spaces and runs of blanks made single spaces."""
    text = element.get_text(" ")
    text = text.replace("\u00a0", " ").replace("\u202f", " ")
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r" ([.,)])", r"\1", text)


def page_text(response: requests.Response) -> str:
    return text_of(parse(response))


def is_french_page(response: requests.Response) -> bool:
    document = parse(response)
    return (
        "text/html" in response.headers.get("Content-Type", "")
        and document.html is not None
        and document.html.get("lang", "").lower().startswith("fr")
    )


def location(response: requests.Response) -> str:
    """The absolute redirect target (never followed: it may point at a client)."""
    assert response.is_redirect, (
        f"expected a redirect, got {response.status_code}:\n{response.text[:2000]}"
    )
    return urljoin(response.url, response.headers["Location"])


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def same_target(url: str, path: str, params: dict[str, str]) -> bool:
    """Whether `url` has this path and at least these query parameters."""
    parts = urlsplit(url)
    return parts.path == path and all(query_of(url).get(k) == v for k, v in params.items())


def control_leading_to(
    response: requests.Response, path: str, params: dict[str, str] | None = None
) -> Tag:
    """The link, or the form's button, that takes the person to `path` with `params`."""
    params = params or {}
    document = parse(response)
    for link in document.find_all("a", href=True):
        if same_target(urljoin(response.url, link["href"]), path, params):
            return link
    for form in document.find_all("form"):
        target = urljoin(response.url, form.get("action") or response.url)
        carried = {**query_of(target), **form_values(form)}
        if urlsplit(target).path == path and all(carried.get(k) == v for k, v in params.items()):
            return form
    raise AssertionError(f"no link or button to {path} {params} on {response.url}:\n{response.text}")


def button_labels(form: Tag) -> list[str]:
    """What the form's submit buttons say."""
    labels = [text_of(button) for button in form.find_all("button")]
    labels += [
        button.get("value", "")
        for button in form.find_all("input", attrs={"type": ["submit", "button"]})
    ]
    return labels


def named_controls(element: Tag) -> set[str]:
    """Names of the visible form controls inside `element`."""
    return {
        control["name"]
        for control in element.find_all(_CONTROLS)
        if control.get("name") and control.get("type") != "hidden"
    }


def form_with_field(response: requests.Response, name: str) -> Tag:
    document = parse(response)
    for form in document.find_all("form"):
        if form.find(_CONTROLS, attrs={"name": name}) is not None:
            return form
    raise AssertionError(f"no form with a field {name!r} on {response.url}:\n{response.text}")


def control_named(form: Tag, name: str) -> Tag:
    control = form.find(_CONTROLS, attrs={"name": name})
    assert control is not None, f"no field {name!r} in form:\n{form}"
    return control


def value_of(control: Tag) -> str:
    if control.name == "textarea":
        return control.get_text()
    if control.name == "select":
        chosen = control.find("option", selected=True)
        return chosen.get("value", chosen.get_text()) if chosen else ""
    return control.get("value", "")


def form_values(form: Tag) -> dict[str, str]:
    """What the browser would send for this form untouched."""
    values = {}
    for control in form.find_all(_CONTROLS):
        name = control.get("name")
        if not name:
            continue
        if control.get("type") in ("checkbox", "radio") and not control.has_attr("checked"):
            continue
        if control.get("type") in ("submit", "button", "image", "reset"):
            continue
        values[name] = value_of(control)
    return values


def submit(
    http: requests.Session, page: requests.Response, form: Tag, changes: dict[str, str]
) -> requests.Response:
    """Posts `form` as found on `page`, with the person's `changes`."""
    target = urljoin(page.url, form.get("action") or page.url)
    origin = "{0.scheme}://{0.netloc}/".format(urlsplit(page.url))
    assert target.startswith(origin), f"form posts outside the server under test: {target}"
    data = {**form_values(form), **changes}
    return post(http, target, {name: value for name, value in data.items() if value is not None})


def field_group(form: Tag, name: str) -> Tag:
    """The widest element around field `name` holding no other visible field."""
    group = control_named(form, name)
    while group.parent is not None and group.parent is not form:
        if not named_controls(group.parent) <= {name}:
            break
        group = group.parent
    return group


def message_next_to(form: Tag, blank_form: Tag, name: str) -> str:
    """Text that appeared around field `name` compared with the blank form."""
    before = text_of(field_group(blank_form, name)).split()
    after = text_of(field_group(form, name)).split()
    added = []
    for tag, _, _, start, end in SequenceMatcher(a=before, b=after).get_opcodes():
        if tag in ("insert", "replace"):
            added += after[start:end]
    return " ".join(added)
