"""A throwaway certificate authority for TLS tests (MQTT and the API): an EC CA and a server
certificate for 127.0.0.1/localhost signed by it, made with the openssl CLI in a test folder."""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def ca_and_server_cert(d: Path, name: str, key_password: str | None = None) -> dict[str, Path]:
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
    openssl(
        "req",
        "-x509",
        *ec,
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={name}-ca",
        "-keyout",
        f"{name}-ca.key",
        "-out",
        f"{name}-ca.crt",
        cwd=d,
    )
    openssl(
        "req",
        *ec,
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        cwd=d,
    )
    (d / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{name}-ca.crt",
        "-CAkey",
        f"{name}-ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.crt",
        cwd=d,
    )
    key = d / f"{name}.key"
    if key_password:
        openssl(
            "pkey",
            "-in",
            key.name,
            "-aes256",
            "-passout",
            f"pass:{key_password}",
            "-out",
            f"{name}.enc.key",
            cwd=d,
        )
        key = d / f"{name}.enc.key"
    key.chmod(0o600)
    return {"ca": d / f"{name}-ca.crt", "cert": d / f"{name}.crt", "key": key}
