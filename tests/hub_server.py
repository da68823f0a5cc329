"""In-process stand-in for the Hugging Face Hub HTTP API, for tests (standard library only).

Covers what the real ``huggingface_hub`` client (checked against 2.4.0) needs for *model* repos:

- ``hf_hub_download``: HEAD/GET ``/{repo_id}/resolve/{revision}/{filename}`` for plain git files (no LFS, no xet),
  with the ``X-Error-Code`` headers the client maps to ``RepositoryNotFoundError`` / ``RevisionNotFoundError`` /
  ``RemoteEntryNotFoundError``.
- ``HfApi.create_repo`` / ``upload_folder`` / ``create_commit``: repo creation, README YAML validation, the
  ``preupload`` call (always answers ``regular``, so content travels base64-encoded inside the NDJSON commit and
  no LFS/xet endpoint is ever needed) and the ``commit`` call.
- Minimal ``model_info`` / ``repo_info``, ``whoami`` and the agent-harness registry that the client fetches from
  ``constants.ENDPOINT`` the first time it builds a User-Agent.

Only the ``main`` branch and its head commit exist; there is no history, no PRs and no auth check.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

# Repo ids are matched lazily up to the keyword, so both 'name' and 'org/name' work.
_RESOLVE = re.compile(r'^/(?P<repo>.+?)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$')
_REPO_OP = re.compile(r'^/api/models/(?P<repo>.+?)/(?P<op>preupload|commit|revision)/(?P<rev>[^/]+)$')
_REPO_INFO = re.compile(r'^/api/models/(?P<repo>[^/]+(?:/[^/]+)?)$')


def git_blob_sha(data: bytes) -> str:
    """Git blob id of ``data``: what the Hub sends as ETag / preupload ``oid`` for regular (non-LFS) files."""
    return hashlib.sha1(b'blob %d\0' % len(data) + data).hexdigest()


class _Repo:
    """One model repo: the files of ``main`` and the id of its (only) head commit."""

    def __init__(self, repo_id: str) -> None:
        self.files: dict[str, bytes] = {}
        self.sha = hashlib.sha1(f'init {repo_id}'.encode()).hexdigest()

    def commit(self, files: dict[str, bytes]) -> str:
        # Content-derived commit id, so identical histories give identical ids across test runs.
        tree = sorted((path, git_blob_sha(data)) for path, data in files.items())
        self.files, self.sha = files, hashlib.sha1(json.dumps([self.sha, tree]).encode()).hexdigest()
        return self.sha


class HubServer:
    """``with HubServer() as hub:`` serves a fake Hub on ``hub.url`` (127.0.0.1, free port) in a daemon thread."""

    def __init__(self) -> None:
        self.url = ''
        self.requests: list[tuple[str, str]] = []  # (method, unquoted path without query), in arrival order
        self._repos: dict[str, _Repo] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> HubServer:
        self._server = _Server(('127.0.0.1', 0), _Handler)
        self._server.hub = self
        self.url = f'http://127.0.0.1:{self._server.server_address[1]}'
        self._thread = threading.Thread(target=self._server.serve_forever, name='hub-server', daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def add_file(self, repo_id: str, path: str, data: bytes) -> None:
        """Commit ``data`` at ``path`` on ``main`` of model repo ``repo_id``, creating the repo if needed."""
        with self._lock:
            repo = self._repos.setdefault(repo_id, _Repo(repo_id))
            repo.commit({**repo.files, path: data})

    def files(self, repo_id: str) -> dict[str, bytes]:
        """Snapshot of the files on ``main`` of ``repo_id`` (KeyError if the repo does not exist)."""
        with self._lock:
            return dict(self._repos[repo_id].files)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections of the client's pool must not block shutdown
    hub: HubServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'  # keep-alive, as the client's httpx pool expects; every reply sets Content-Length
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _send(self, status: int, body: bytes = b'', headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header('Content-Length', str(len(body)))  # for HEAD: the size the GET body would have
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), {'Content-Type': 'application/json', **(headers or {})})

    def _error(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None) -> None:
        # The client picks its exception class from X-Error-Code (utils/_http.py: hf_raise_for_status).
        extra = {'X-Error-Message': message, **({'X-Error-Code': code} if code else {}), **(headers or {})}
        self._json(status, {'error': message}, extra)

    def _dispatch(self) -> None:
        hub = self.server.hub
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get('Content-Length') or 0))  # drain it to keep the socket usable
        with hub._lock:
            hub.requests.append((self.command, unquote(url.path)))
        key = (self.command, url.path)
        if key == ('GET', '/api/agent-harnesses'):
            return self._json(200, {'standardEnvVars': [], 'harnesses': {}})  # empty registry: no agent detected
        if key == ('GET', '/api/whoami-v2'):
            return self._json(200, {'type': 'user', 'name': 'test-user', 'orgs': [], 'auth': {'type': 'access_token'}})
        if key == ('POST', '/api/validate-yaml'):
            return self._json(200, {'errors': [], 'warnings': []})
        if key == ('POST', '/api/repos/create'):
            return self._create_repo(json.loads(body))
        if match := _REPO_OP.match(url.path):
            repo_id, op, rev = unquote(match['repo']), match['op'], unquote(match['rev'])
            if (self.command, op) not in {('POST', 'preupload'), ('POST', 'commit'), ('GET', 'revision')}:
                return self._error(405, None, f'{self.command} not allowed on {op}')
            if 'create_pr' in parse_qs(url.query):
                return self._error(400, None, 'pull requests are not supported by this stand-in')
            return self._repo_op(repo_id, op, rev, body)
        if self.command == 'GET' and (match := _REPO_INFO.match(url.path)):
            return self._repo_op(unquote(match['repo']), 'revision', 'main', body)
        if self.command in ('GET', 'HEAD') and (match := _RESOLVE.match(url.path)):
            return self._resolve(unquote(match['repo']), unquote(match['rev']), unquote(match['file']))
        self._error(404, None, f'no such endpoint in the stand-in Hub: {self.command} {url.path}')

    def _create_repo(self, payload: dict[str, Any]) -> None:
        if payload.get('type', 'model') != 'model':
            return self._error(400, None, 'only model repos are supported by this stand-in')
        name, org = payload['name'], payload.get('organization')
        repo_id = f'{org}/{name}' if org else name
        url = f'{self.server.hub.url}/{repo_id}'
        with self.server.hub._lock:
            exists = repo_id in self.server.hub._repos
            self.server.hub._repos.setdefault(repo_id, _Repo(repo_id))
        if exists:  # create_repo(exist_ok=True) swallows the 409 but still reads 'url' from the body
            return self._json(409, {'error': 'You already created this model repo', 'url': url})
        self._json(200, {'url': url, 'name': repo_id})

    def _lookup(self, repo_id: str, rev: str) -> _Repo | None:
        """The repo if ``rev`` names its head (``main`` or the head sha); otherwise reply 404 and return None."""
        repo = self.server.hub._repos.get(repo_id)
        if repo is None:
            self._error(404, 'RepoNotFound', 'Repository not found')
        elif rev not in ('main', repo.sha):
            self._error(404, 'RevisionNotFound', f'Invalid rev id: {rev}')
        else:
            return repo
        return None

    def _resolve(self, repo_id: str, rev: str, filename: str) -> None:
        with self.server.hub._lock:
            repo = self._lookup(repo_id, rev)
            if repo is None:
                return
            sha, data = repo.sha, repo.files.get(filename)
        if data is None:  # X-Repo-Commit lets the client cache the miss under .no_exist/<sha>/
            return self._error(404, 'EntryNotFound', 'Entry not found', {'X-Repo-Commit': sha})
        # X-Repo-Commit and ETag are mandatory for the client; no X-Xet-* / Link headers, so it never tries xet.
        headers = {'X-Repo-Commit': sha, 'ETag': f'"{git_blob_sha(data)}"', 'Content-Type': 'application/octet-stream'}
        self._send(200, data, headers)

    def _repo_op(self, repo_id: str, op: str, rev: str, body: bytes) -> None:
        hub = self.server.hub
        with hub._lock:  # held for the whole commit so concurrent commits apply one after the other
            repo = self._lookup(repo_id, rev)
            if repo is None:
                return
            if op == 'revision':
                siblings = [{'rfilename': path} for path in sorted(repo.files)]
                return self._json(200, {'id': repo_id, 'modelId': repo_id, 'sha': repo.sha, 'siblings': siblings})
            if op == 'preupload':
                # 'oid' of files already on main lets the client skip unchanged files instead of re-committing them.
                current = {path: git_blob_sha(data) for path, data in repo.files.items()}
                files = [
                    {'path': f['path'], 'uploadMode': 'regular', 'shouldIgnore': False, 'oid': current.get(f['path'])}
                    for f in json.loads(body)['files']
                ]
                return self._json(200, {'files': files})
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            header = lines[0]['value'] if lines and lines[0]['key'] == 'header' else {}
            if header.get('parentCommit') not in (None, repo.sha):
                return self._error(412, None, 'A commit has happened since. Please refresh and try again.')
            files = dict(repo.files)
            for item in lines[1 if header else 0 :]:
                key, value = item['key'], item['value']
                if key == 'file' and value.get('encoding') == 'base64':
                    files[value['path']] = base64.b64decode(value['content'])
                elif key == 'file':
                    files[value['path']] = value['content'].encode()
                elif key == 'deletedFile' and value['path'] in files:
                    del files[value['path']]
                elif key == 'deletedFolder':
                    prefix = value['path'].rstrip('/') + '/'
                    files = {path: data for path, data in files.items() if not path.startswith(prefix)}
                elif key == 'deletedFile':
                    return self._error(404, 'EntryNotFound', "A file with this name doesn't exist")
                else:  # lfsFile / copies: preupload never asks for LFS, so the client has no reason to send them
                    return self._error(400, None, f'unsupported commit operation: {key}')
            sha = repo.commit(files)
        self._json(
            200,
            {
                'success': True,
                'commitOid': sha,
                'commitUrl': f'{hub.url}/{repo_id}/commit/{sha}',
                'pullRequestUrl': None,
            },
        )
