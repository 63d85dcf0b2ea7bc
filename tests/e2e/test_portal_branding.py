"""Issue 11: another portal can use the same binary with its own name, colours, logo
and links, set in `[portal]` of `dge-idp serve`'s configuration; check-config refuses
what the pages could not show safely."""

from __future__ import annotations

import html
import re
import signal
import subprocess
import time
from pathlib import Path

from idp_server import clean_env, free_ports, idp_binary, loopback_http

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
LOGO = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="48" height="48" viewBox="0 0 48 48">'
    '<rect width="48" height="48" fill="#1f6f43"/></svg>'
)


def write_config(tmp_path: Path, portal: str, http_port: int = 0) -> Path:
    config = tmp_path / "dge-idp.toml"
    config.write_text(
        f'[server]\npublic_url = "http://127.0.0.1:{http_port or 8080}"\n'
        f'[database]\nurl = "sqlite://{tmp_path / "idp.db"}?mode=rwc"\n'
        f'[keys]\nencryption_key = "{KEY}"\n'
        f'[mail]\nfrom = "Portail <no-reply@portail.example.fr>"\noutbox_dir = "{tmp_path / "outbox"}"\n'
        + portal,
        encoding="utf-8",
    )
    return config


def check_config(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(idp_binary()), "check-config", "--config", str(config)],
        capture_output=True, text=True, env=clean_env(), timeout=30,
    )


def test_a_portal_of_its_own_shows_its_name_colour_logo_and_links(tmp_path):
    (tmp_path / "logo.svg").write_text(LOGO, encoding="utf-8")
    http_port, grpc_port = free_ports(2)
    config = write_config(tmp_path, (
        '[portal]\nname = "Portail Test"\nhome_url = "https://portail.example.fr/"\n'
        'primary_color = "#1f6f43"\nsupport_email = "aide@portail.example.fr"\n'
        'tagline = "Connexion des agents"\nfooter_text = "le portail de démonstration <b>sûr</b>."\n'
        f'logo_file = "{tmp_path / "logo.svg"}"\n'
        '[[portal.footer_links]]\nlabel = "Mentions légales"\nurl = "https://portail.example.fr/mentions"\n'
        '[[portal.footer_links]]\nlabel = "Accessibilité"\nurl = "/accessibilite"\n'
    ), http_port)
    checked = check_config(config)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    env = clean_env({
        "DGE_SERVER__HTTP_ADDR": f"127.0.0.1:{http_port}",
        "DGE_SERVER__GRPC_ADDR": f"127.0.0.1:{grpc_port}",
    })
    base = f"http://127.0.0.1:{http_port}"
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(idp_binary()), "serve", "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
        )
    http = loopback_http()
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if http.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)

        for path in ("/login", "/signup", "/password/forgot"):
            page = http.get(f"{base}{path}", timeout=10)
            assert page.status_code == 200, path
            text = page.text
            assert "<title>" in text and "– Portail Test</title>" in text, path
            assert "DataGrandEst" not in text, path
            assert '<p class="brand-tagline">Connexion des agents</p>' in text
            # The footer sentence is text, never markup.
            assert "<b>sûr</b>" not in text
            assert "le portail de démonstration <b>sûr</b>." in html.unescape(text)
            links = dict(
                (html.unescape(label), html.unescape(href))
                for href, label in re.findall(r'<li><a href="([^"]+)">([^<]+)</a></li>', text)
            )
            assert links == {
                "Retour au portail Portail Test": "https://portail.example.fr/",
                "Mentions légales": "https://portail.example.fr/mentions",
                "Accessibilité": "/accessibilite",
            }, links
            logos = re.findall(r'<img class="brand-logo" src="([^"]+)"', text)
            assert [html.unescape(src) for src in logos] == ["/static/logo"]

        logo = http.get(f"{base}/static/logo", timeout=10)
        assert logo.status_code == 200
        assert logo.headers["content-type"] == "image/svg+xml"
        assert logo.text == LOGO
        # An SVG opened on its own runs nothing.
        assert "sandbox" in logo.headers["content-security-policy"]
        css = http.get(f"{base}/static/portal.css", timeout=10)
        assert "--blue: #1f6f43;" in css.text
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_the_default_portal_has_no_logo_route(idp):
    answer = loopback_http().get(f"{idp.base_url}/static/logo", timeout=10)
    assert answer.status_code == 404
    page = loopback_http().get(f"{idp.base_url}/login", timeout=10).text
    assert "brand-logo" not in page
    assert "Retour au portail DataGrandEst" in page


def test_check_config_refuses_what_the_pages_cannot_show_safely(tmp_path):
    (tmp_path / "logo.gif").write_bytes(b"GIF89a")
    (tmp_path / "big.png").write_bytes(b"\x89PNG" + b"\0" * (300 * 1024))
    cases = {
        'primary_color = "red; } body { display: none"': "portal.primary_color: #rgb or #rrggbb",
        'home_url = "javascript:alert(1)"': "portal.home_url: an http(s) URL",
        'support_email = "pas une adresse"': "portal.support_email: not an email address",
        f'logo_file = "{tmp_path / "logo.gif"}"': "portal.logo_file: a .png, .svg, .webp or .jpg file",
        f'logo_file = "{tmp_path / "big.png"}"': "portal.logo_file: at most 256 KiB",
        f'logo_file = "{tmp_path / "absent.svg"}"': "is not a readable file",
        f'tagline = "{"x" * 81}"': "portal.tagline: at most 80 characters",
        '[[portal.footer_links]]\nlabel = "Piège"\nurl = "javascript:alert(1)"':
            "portal.footer_links[0].url: an http(s) URL or a path starting with /",
        '[[portal.footer_links]]\nlabel = "Ailleurs"\nurl = "//evil.example/x"':
            "portal.footer_links[0].url: an http(s) URL or a path starting with /",
        '[[portal.footer_links]]\nlabel = " "\nurl = "/ok"': "portal.footer_links[0].label: 1 to 80 characters",
    }
    for setting, expected in cases.items():
        result = check_config(write_config(tmp_path, f"[portal]\n{setting}\n"))
        output = result.stdout + result.stderr
        assert result.returncode != 0, setting
        assert expected in output, (setting, output)
