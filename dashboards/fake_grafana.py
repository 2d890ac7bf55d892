"""A recording stand-in for the Grafana HTTP API endpoints `dashboards push` uses (folders,
dashboards by uid, datasources by uid), with bearer-token auth, for tests and demos.

It keeps state in memory like Grafana does (ids and versions assigned by the server) and
records every call as (method, path), so a test can assert what a push changed.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeGrafana:
    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[tuple[str, str]] = []
        self.datasources: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self._next_id = 1
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeGrafana:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] != "GET"]

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def handle(self, method: str, path: str, auth: str, body: Any) -> tuple[int, Any]:
        with self._lock:
            self.calls.append((method, path))
            if auth != f"Bearer {self.token}":
                return 401, {"message": "invalid API key"}
            parts = path.split("?")[0].strip("/").split("/")
            if parts[:1] != ["api"]:
                return 404, {"message": "not found"}
            parts = parts[1:]
            if parts == ["folders"] and method == "GET":
                return 200, sorted(self.folders.values(), key=lambda f: f["id"])
            if parts == ["folders"] and method == "POST":
                uid = body.get("uid") or f"f{self._id()}"
                if uid in self.folders:
                    return 409, {"message": "a folder with the same uid already exists"}
                self.folders[uid] = {"id": self._id(), "uid": uid, "title": body["title"]}
                return 200, self.folders[uid]
            if parts[:2] == ["datasources", "uid"] and len(parts) == 3:
                uid = parts[2]
                if method == "GET":
                    ds = self.datasources.get(uid)
                    if ds is None:
                        return 404, {"message": "Data source not found"}
                    return 200, {k: v for k, v in ds.items() if k != "secureJsonData"}
                if method == "PUT":
                    if uid not in self.datasources:
                        return 404, {"message": "Data source not found"}
                    self.datasources[uid] = {**body, "id": self.datasources[uid]["id"]}
                    return 200, {"message": "Datasource updated"}
            if parts == ["datasources"] and method == "POST":
                uid = body["uid"]
                if uid in self.datasources:
                    return 409, {"message": "data source with the same uid already exists"}
                self.datasources[uid] = {**body, "id": self._id()}
                return 200, {"message": "Datasource added", "id": self.datasources[uid]["id"]}
            if parts[:2] == ["dashboards", "uid"] and len(parts) == 3 and method == "GET":
                d = self.dashboards.get(parts[2])
                if d is None:
                    return 404, {"message": "Dashboard not found"}
                return 200, {"dashboard": d["dashboard"], "meta": {"folderUid": d["folderUid"]}}
            if parts == ["dashboards", "db"] and method == "POST":
                dash = dict(body["dashboard"])
                uid = dash["uid"]
                if body.get("folderUid") and body["folderUid"] not in self.folders:
                    return 400, {"message": "folder not found"}
                old = self.dashboards.get(uid)
                if old is not None and not body.get("overwrite"):
                    return 412, {"message": "A dashboard with the same uid already exists"}
                dash["id"] = old["dashboard"]["id"] if old else self._id()
                dash["version"] = old["dashboard"]["version"] + 1 if old else 1
                self.dashboards[uid] = {"dashboard": dash, "folderUid": body.get("folderUid")}
                return 200, {"status": "success", "uid": uid, "version": dash["version"]}
            return 404, {"message": f"no route {method} {path}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _do(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw else None
                status, out = fake.handle(
                    self.command, self.path, self.headers.get("Authorization", ""), body
                )
                data = json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _do

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler
