"""HDFS: a small file-system client for the lake, and the IO manager that lands raw CSV under ``dt=YYYY-MM-DD``.

The lake is addressed by a Hadoop URL (``TVP_HDFS_URL``). ``hdfs://`` is reached over WebHDFS (REST, no native
libraries), ``file://`` is the local file system — the same code serves both, so tests and laptops without HDFS work too.
Writes are atomic: a file is written aside under a temporary name, then renamed into place.
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import requests


class LakeError(RuntimeError):
    pass


@dataclass
class LakeFS:
    """Operations on the lake's file system; paths are absolute paths inside it (``/tv_platform/raw/...``)."""

    url: str  # hdfs://host:port or file:///some/dir (a root under which absolute paths live)
    webhdfs_url: str = ""
    user: str = "tv_platform"
    timeout: float = 60.0

    def __post_init__(self) -> None:
        parsed = urlparse(self.url)
        self.scheme = parsed.scheme or "file"
        if self.scheme == "file":
            self._root = Path(parsed.path or "/")
        elif self.scheme == "hdfs":
            if not self.webhdfs_url:
                raise LakeError("an hdfs:// lake needs the WebHDFS URL (TVP_WEBHDFS_URL)")
            self._session = requests.Session()
        else:
            raise LakeError(f"unsupported lake URL scheme {self.scheme!r}: use hdfs:// or file://")

    # ---- addressing ----------------------------------------------------------------------------------------------
    def uri(self, path: str) -> str:
        """Full Hadoop URI of a lake path (what Spark and Hive are given)."""
        return self.url.rstrip("/") + "/" + path.lstrip("/")

    def _local(self, path: str) -> Path:
        return self._root / path.lstrip("/")

    def _rest(self, method: str, path: str, op: str, allow_redirects: bool = True, **params):
        url = f"{self.webhdfs_url.rstrip('/')}/webhdfs/v1/{path.lstrip('/')}"
        params = {"op": op, "user.name": self.user, **params}
        try:
            resp = self._session.request(method, url, params=params, timeout=self.timeout, allow_redirects=allow_redirects)
        except requests.RequestException as exc:
            raise LakeError(f"WebHDFS {op} {path}: {exc.__class__.__name__}: {exc}") from exc
        return resp

    @staticmethod
    def _check(resp, what: str) -> dict:
        if resp.status_code >= 400:
            try:
                detail = resp.json()["RemoteException"]["message"]
            except Exception:  # noqa: BLE001
                detail = resp.text[:300]
            raise LakeError(f"WebHDFS {what}: HTTP {resp.status_code}: {detail}")
        try:
            return resp.json() if resp.content else {}
        except ValueError:
            return {}

    # ---- operations ----------------------------------------------------------------------------------------------
    def mkdirs(self, path: str) -> None:
        if self.scheme == "file":
            self._local(path).mkdir(parents=True, exist_ok=True)
            return
        self._check(self._rest("PUT", path, "MKDIRS", permission="777"), f"MKDIRS {path}")

    def exists(self, path: str) -> bool:
        if self.scheme == "file":
            return self._local(path).exists()
        resp = self._rest("GET", path, "GETFILESTATUS")
        if resp.status_code == 404:
            return False
        self._check(resp, f"GETFILESTATUS {path}")
        return True

    def listdir(self, path: str) -> list[str]:
        """Names in a directory (empty if it does not exist)."""
        if self.scheme == "file":
            p = self._local(path)
            return sorted(x.name for x in p.iterdir()) if p.is_dir() else []
        resp = self._rest("GET", path, "LISTSTATUS")
        if resp.status_code == 404:
            return []
        body = self._check(resp, f"LISTSTATUS {path}")
        return sorted(s["pathSuffix"] for s in body["FileStatuses"]["FileStatus"])

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a file atomically: aside under a temporary name in the same directory, then rename into place."""
        parent, name = path.rsplit("/", 1)
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        self.mkdirs(parent)
        if self.scheme == "file":
            local_tmp = self._local(tmp)
            with open(local_tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(local_tmp, self._local(path))
            return
        # WebHDFS CREATE is two steps: the NameNode redirects to a DataNode, which takes the bytes.
        second = self._via_datanode("PUT", tmp, "CREATE", data=data, overwrite="true")
        self._check(second, f"CREATE {tmp}")
        self.rename(tmp, path, overwrite=True)

    def read_bytes(self, path: str) -> bytes:
        if self.scheme == "file":
            return self._local(path).read_bytes()
        resp = self._via_datanode("GET", path, "OPEN")
        self._check(resp, f"OPEN {path}")
        return resp.content

    DATANODE_ATTEMPTS = 3

    def _via_datanode(self, method: str, path: str, op: str, data: bytes | None = None, **params):
        """A WebHDFS call the NameNode redirects to a DataNode (CREATE, OPEN). A DataNode that does not answer — killed,
        and still "live" for the NameNode until its heartbeats expire — is excluded (``excludedatanodes``, by its
        transfer address) and the call asked again, up to ``DATANODE_ATTEMPTS`` DataNodes."""
        excluded: list[str] = []
        for attempt in range(1, self.DATANODE_ATTEMPTS + 1):
            extra = {"excludedatanodes": ",".join(excluded)} if excluded else {}
            first = self._rest(method, path, op, allow_redirects=False, **params, **extra)
            if first.status_code != 307:
                self._check(first, f"{op} {path}")
                raise LakeError(f"WebHDFS {op} {path}: expected a redirect, got HTTP {first.status_code}")
            location = first.headers["Location"]
            try:
                return self._session.request(method, location, data=data, timeout=self.timeout)
            except requests.RequestException as exc:
                if attempt == self.DATANODE_ATTEMPTS or not isinstance(exc, requests.ConnectionError):
                    raise LakeError(f"WebHDFS {op} {path} (DataNode {urlparse(location).netloc}): {exc}") from exc
                excluded.append(self._transfer_address(urlparse(location).netloc) or urlparse(location).hostname)
        raise AssertionError("unreachable")

    def _transfer_address(self, http_address: str) -> str | None:
        """The data-transfer address (what ``excludedatanodes`` names) of the DataNode serving HTTP at
        ``http_address``, from the NameNode's list of DataNodes (its JMX bean NameNodeInfo)."""
        import json

        try:
            resp = self._session.get(f"{self.webhdfs_url.rstrip('/')}/jmx",
                                     params={"qry": "Hadoop:service=NameNode,name=NameNodeInfo"}, timeout=10)
            nodes = json.loads(resp.json()["beans"][0]["LiveNodes"])
        except Exception:  # noqa: BLE001 - without it the retry excludes by host name
            return None
        for node in nodes.values():
            if node.get("infoAddr") == http_address:
                return node.get("xferaddr")
        return None

    def rename(self, src: str, dst: str, overwrite: bool = False) -> None:
        if self.scheme == "file":
            os.replace(self._local(src), self._local(dst))
            return
        if overwrite and self.exists(dst):
            self.delete(dst)
        body = self._check(self._rest("PUT", src, "RENAME", destination="/" + dst.lstrip("/")), f"RENAME {src}")
        if body.get("boolean") is False:
            raise LakeError(f"WebHDFS RENAME {src} -> {dst} refused")

    def delete(self, path: str, recursive: bool = True) -> None:
        if self.scheme == "file":
            p = self._local(path)
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
            return
        self._check(self._rest("DELETE", path, "DELETE", recursive=str(recursive).lower()), f"DELETE {path}")

    def replace_dir(self, path: str, files: dict[str, bytes]) -> None:
        """Replace a whole directory (a partition) atomically: build it aside, then swap it in with renames."""
        parent, name = path.rstrip("/").rsplit("/", 1)
        staging = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.staging"
        self.mkdirs(staging)
        for fname, data in files.items():
            self.write_bytes(f"{staging}/{fname}", data)
        old = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.old"
        had_old = self.exists(path)
        if had_old:
            self.rename(path, old)
        self.rename(staging, path)
        if had_old:
            self.delete(old)

    def write_text(self, path: str, text: str) -> None:
        self.write_bytes(path, text.encode("utf-8"))

    def read_text(self, path: str) -> str:
        return self.read_bytes(path).decode("utf-8")


def lake_fs(settings=None) -> LakeFS:
    from tv_platform.settings import get_settings

    s = settings or get_settings()
    return LakeFS(url=s.hdfs_url, webhdfs_url=s.webhdfs_url, user=s.hdfs_user)


def frame_to_csv_bytes(frame, header: bool = True) -> bytes:
    """``frame`` as CSV (no index, ``\\n`` line ends), byte for byte what pandas' ``to_csv`` writes.

    A frame of integer and text columns whose values need no quoting (landed events: validated ids, hex session ids,
    timers, statuses) is written by Arrow's CSV writer, ~10× faster than pandas; anything else — floats, dates, text
    with a comma, quote or line break (quarantined payloads) — by pandas."""
    import pandas as pd

    simple = all(pd.api.types.is_integer_dtype(t) or pd.api.types.is_string_dtype(t) for t in frame.dtypes)
    if simple and all(isinstance(c, str) and not set(c) & set(',"\r\n') for c in frame.columns):
        import pyarrow as pa
        import pyarrow.csv as pcsv

        try:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            out = io.BytesIO()
            if header:
                out.write((",".join(frame.columns) + "\n").encode("utf-8"))
            pcsv.write_csv(table, out, pcsv.WriteOptions(include_header=False, quoting_style="none"))
            return out.getvalue()
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # a value that needs quoting, or mixed objects: pandas decides
            pass
    buf = io.StringIO()
    frame.to_csv(buf, index=False, header=header, lineterminator="\n")
    return buf.getvalue().encode("utf-8")


# ---------------------------------------------------------------------------------------------------------------------
# Dagster: the lake resource and the CSV IO manager
# ---------------------------------------------------------------------------------------------------------------------
import dagster as dg  # noqa: E402
import pandas as pd  # noqa: E402

from tv_platform.dates import timer_texts  # noqa: E402
from tv_platform.engines import metadata  # noqa: E402


class LakeResource(dg.ConfigurableResource):
    """The lake's file system (HDFS over WebHDFS, or file://) for assets that write files themselves."""

    hdfs_url: str
    webhdfs_url: str = ""
    user: str = "tv_platform"
    lake_root: str = "/tv_platform"

    def fs(self) -> LakeFS:
        return LakeFS(url=self.hdfs_url, webhdfs_url=self.webhdfs_url, user=self.user)


def declared_dtypes(context) -> dict[str, str]:
    """The ``dagster/column_schema`` of an asset as {name: pandas dtype}. Types are declared, never guessed."""
    cols = metadata.declared_columns(context.definition_metadata)
    if not cols:
        raise LakeError(f"asset {context.asset_key.to_user_string()} declares no 'dagster/column_schema' metadata")
    return cols


def conform(frame: pd.DataFrame, columns: dict[str, str], what: str) -> pd.DataFrame:
    """Exactly the declared columns, in order, with the declared types; a clear error otherwise."""
    missing = [c for c in columns if c not in frame.columns]
    extra = [c for c in frame.columns if c not in columns]
    if missing or extra:
        raise LakeError(f"{what}: columns differ from the declaration (missing {missing}, unexpected {extra})")
    out = frame[list(columns)].copy()
    for name, dtype in columns.items():
        try:
            if dtype.startswith("datetime64"):
                out[name] = pd.to_datetime(out[name]).astype(dtype)
            else:
                out[name] = out[name].astype(dtype)
        except (TypeError, ValueError) as exc:
            raise LakeError(f"{what}: column {name!r} is not {dtype}: {exc}") from exc
    return out


class HdfsCsvIOManager(dg.ConfigurableIOManager):
    """Raw CSV in the lake. A daily-partitioned asset is a directory ``<lake_root>/<path>/<partition_expr>=YYYY-MM-DD/``
    replaced atomically (written aside, then renamed) on every materialization; an unpartitioned one is
    ``<path>/<name>.csv``.

    Metadata (``tv_platform/engines/metadata.py``): ``dagster/column_schema`` (columns and pandas dtypes),
    ``partition_expr`` (``dt``: the directory key), ``columns`` on an ``AssetIn`` (what a reader selects);
    ``lake_path`` places it (default ``raw/<asset name>``). Timestamps are written as ``YYYY-MM-DD HH:MM:SS``.
    Reports ``dagster/row_count``.
    """

    hdfs_url: str
    webhdfs_url: str = ""
    user: str = "tv_platform"
    lake_root: str = "/tv_platform"

    def _fs(self) -> LakeFS:
        return LakeFS(url=self.hdfs_url, webhdfs_url=self.webhdfs_url, user=self.user)

    def _dir(self, context) -> str:
        meta = context.definition_metadata or {}
        rel = meta.get("lake_path")
        rel = (rel.value if hasattr(rel, "value") else rel) or f"raw/{context.asset_key.path[-1]}"
        return "/" + self.lake_root.strip("/") + "/" + str(rel).strip("/")

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if obj is None:
            return
        columns = declared_dtypes(context)
        frame = conform(obj, columns, context.asset_key.to_user_string())
        fs = self._fs()
        base = self._dir(context)
        payload = frame_to_csv_bytes(frame.assign(**{
            c: pd.Series(timer_texts(frame[c]).to_pandas(), index=frame.index, dtype="str")
            for c, t in columns.items() if t.startswith("datetime64")
        }))
        if context.has_asset_partitions:
            written = []
            keys = context.asset_partition_keys
            if len(keys) > 1:
                raise LakeError("HdfsCsvIOManager writes one daily partition per output; run ranges partition by partition")
            key = metadata.partition_expr(context.definition_metadata, context.asset_key.to_user_string())
            target = f"{base}/{key}={keys[0]}"
            fs.replace_dir(target, {"events.csv": payload})
            written.append(target)
        else:
            target = base
            fs.replace_dir(target, {f"{context.asset_key.path[-1]}.csv": payload})
        context.add_output_metadata({
            "path": dg.MetadataValue.path(fs.uri(target)),
            metadata.ROW_COUNT: dg.MetadataValue.int(len(frame)),
            "bytes": dg.MetadataValue.int(len(payload)),
        })

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        columns = declared_dtypes(upstream)
        selected = metadata.selected_columns(context)
        fs = self._fs()
        base = self._dir(upstream)
        if context.has_asset_partitions:
            key = metadata.partition_expr(upstream.definition_metadata, upstream.asset_key.to_user_string())
            dirs = [f"{base}/{key}={k}" for k in context.asset_partition_keys]
        else:
            dirs = [base]
        frames = []
        for d in dirs:
            for name in fs.listdir(d):
                if name.endswith(".csv") and not name.startswith("."):
                    frames.append(read_csv_bytes(fs.read_bytes(f"{d}/{name}"), columns))
        if not frames:
            frame = pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
        else:
            frame = pd.concat(frames, ignore_index=True)
        return frame[selected] if selected else frame


def read_csv_bytes(data: bytes, columns: dict[str, str]) -> pd.DataFrame:
    dates = [c for c, t in columns.items() if t.startswith("datetime64")]
    plain = {c: t for c, t in columns.items() if c not in dates}
    frame = pd.read_csv(io.BytesIO(data), dtype=plain, parse_dates=dates, keep_default_na=False)
    for c in dates:
        frame[c] = frame[c].astype(columns[c])
    return frame
