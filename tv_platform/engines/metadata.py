"""The asset metadata every IO manager of the platform reads — Dagster's conventions for stored assets, one dialect:

    dagster/column_schema  the declared columns, each with its type in the engine that stores it (pandas dtypes for
                           the lake's CSV, Hive types for its tables, SQL types for the warehouses)
    partition_expr         the column (for HDFS: the directory key ``<expr>=YYYY-MM-DD``) a daily partition selects;
                           required on partitioned assets
    sum_columns            numeric columns whose sums are reported with the row count (what consistency checks compare)
    columns                on an ``AssetIn``: the columns the downstream asset reads

Every IO manager reports ``dagster/row_count``. :func:`declare` builds the metadata; the readers below fetch it back.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

import dagster as dg

COLUMN_SCHEMA = "dagster/column_schema"
PARTITION_EXPR = "partition_expr"
SUM_COLUMNS = "sum_columns"
COLUMNS = "columns"
ROW_COUNT = "dagster/row_count"


def declare(columns: "dict[str, str] | Iterable[tuple[str, str]]", *, partition_expr: Optional[str] = None,
            sum_columns: Sequence[str] = (), descriptions: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """Asset metadata declaring a stored table: its columns and their types (with a description where
    ``descriptions`` has one), the partition expression, the sums."""
    pairs = list(columns.items()) if isinstance(columns, dict) else list(columns)
    docs = descriptions or {}
    meta: dict[str, Any] = {COLUMN_SCHEMA: dg.TableSchema(
        columns=[dg.TableColumn(n, str(t), description=docs.get(n)) for n, t in pairs])}
    if partition_expr:
        meta[PARTITION_EXPR] = partition_expr
    if sum_columns:
        meta[SUM_COLUMNS] = list(sum_columns)
    return meta


def raw(value: Any) -> Any:
    """The plain Python value of a metadata entry (Dagster may wrap it in a MetadataValue)."""
    return value.value if isinstance(value, dg.MetadataValue) else value


def declared_columns(metadata: Optional[dict]) -> Optional[dict[str, str]]:
    """{name: type} of the ``dagster/column_schema`` (None when the asset declares none)."""
    schema = raw((metadata or {}).get(COLUMN_SCHEMA))
    if not isinstance(schema, dg.TableSchema):
        return None
    return {c.name: str(c.type) for c in schema.columns}


def partition_expr(metadata: Optional[dict], what: str) -> str:
    """The ``partition_expr`` of a partitioned asset; a clear error when it declares none."""
    expr = raw((metadata or {}).get(PARTITION_EXPR))
    if not expr:
        raise ValueError(f"{what} is partitioned but declares no 'partition_expr' metadata (the column a daily "
                         "partition selects, e.g. 'dt')")
    return str(expr)


def sum_columns(metadata: Optional[dict]) -> list[str]:
    return list(raw((metadata or {}).get(SUM_COLUMNS)) or [])


def selected_columns(context: dg.InputContext) -> Optional[list[str]]:
    """The ``columns`` an ``AssetIn`` asks for (None: all)."""
    selected = raw((context.definition_metadata or {}).get(COLUMNS))
    return list(selected) if selected else None
