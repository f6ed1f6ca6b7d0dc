"""SQL building blocks of the filter language (private).

* [`Like`][sqla_repo._sql.Like]: a LIKE comparison with the same case semantics on every
  backend (``GLOB`` on SQLite, a binary collation on MariaDB/MySQL).
* [`NullsSmallest`][sqla_repo._sql.NullsSmallest]: an ``ORDER BY`` element placing NULL
  as the smallest value, spelled ``NULLS FIRST/LAST`` only where the backend needs it.
* [`resolve`][sqla_repo._sql.resolve]: a whitelisted field name to its column expression.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, String, inspect, literal
from sqlalchemy.exc import NoInspectionAvailable
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnElement, Grouping, UnaryExpression
from sqlalchemy.sql.visitors import InternalTraversal

from sqla_repo.exceptions import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.orm import Mapper
    from sqlalchemy.sql.compiler import SQLCompiler

__all__ = [
    "ESCAPE",
    "Field",
    "Like",
    "NullsSmallest",
    "hybrid_names",
    "is_query_expression",
    "mapper_of",
    "resolve",
]

ESCAPE = "\\"
"""The escape character of LIKE patterns."""

# Backends where NULL already sorts as the smallest value; MariaDB/MySQL and SQL Server
# also reject the NULLS FIRST/LAST syntax.
_NULLS_SMALLEST_NATIVELY = ("sqlite", "mysql", "mariadb", "mssql")


class Like(ColumnElement[bool]):
    r"""``element LIKE pattern ESCAPE '\'``, case-sensitive or not, alike on every backend."""

    __visit_name__ = "sqla_repo_like"
    inherit_cache = True
    _traverse_internals = [  # noqa: RUF012 - SQLAlchemy's protocol
        ("element", InternalTraversal.dp_clauseelement),
        ("pattern", InternalTraversal.dp_clauseelement),
        ("glob", InternalTraversal.dp_clauseelement),
        ("escape", InternalTraversal.dp_clauseelement),
        ("case_insensitive", InternalTraversal.dp_boolean),
    ]
    type = Boolean()

    def __init__(
        self, element: ColumnElement[Any], pattern: str, *, case_insensitive: bool
    ) -> None:
        self.element = element
        self.case_insensitive = case_insensitive
        # Values travel as bound parameters (the escape too: MySQL string literals treat
        # a backslash differently depending on the session's SQL mode).
        self.pattern = literal(pattern, String())
        self.glob = literal("" if case_insensitive else glob_pattern(pattern), String())
        self.escape = literal(ESCAPE, String())

    @property
    def _from_objects(self) -> list[Any]:
        return self.element._from_objects  # noqa: SLF001 - SQLAlchemy's protocol

    def self_group(self, against: Any = None) -> ColumnElement[Any]:  # noqa: ARG002 - always grouped
        """Parenthesise the comparison wherever it is embedded."""
        return Grouping(self)

    def _negate(self) -> ColumnElement[Any]:
        return Grouping(self)._negate()  # noqa: SLF001 - SQLAlchemy's protocol


def glob_pattern(pattern: str) -> str:
    """Translate a LIKE pattern (backslash escape, no trailing escape) to a GLOB pattern."""
    out: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == ESCAPE:
            literal_char = next(chars)
        elif char in {"%", "_"}:
            out.append("*" if char == "%" else "?")
            continue
        else:
            literal_char = char
        out.append(f"[{literal_char}]" if literal_char in "*?[" else literal_char)
    return "".join(out)


@compiles(Like)
def _like(element: Like, compiler: SQLCompiler, **kw: object) -> str:
    column = compiler.process(element.element, **kw)
    pattern = compiler.process(element.pattern, **kw)
    escape = compiler.process(element.escape, **kw)
    if element.case_insensitive:
        if compiler.dialect.name == "postgresql":
            return f"{column} ILIKE {pattern} ESCAPE {escape}"
        return f"lower({column}) LIKE lower({pattern}) ESCAPE {escape}"
    return f"{column} LIKE {pattern} ESCAPE {escape}"


@compiles(Like, "sqlite")
def _like_sqlite(element: Like, compiler: SQLCompiler, **kw: object) -> str:
    # SQLite's LIKE ignores ASCII case (unless a connection PRAGMA says otherwise), while
    # GLOB is always case-sensitive: a case-sensitive LIKE becomes the equivalent GLOB.
    if element.case_insensitive:
        return _like(element, compiler, **kw)
    column = compiler.process(element.element, **kw)
    return f"{column} GLOB {compiler.process(element.glob, **kw)}"


@compiles(Like, "mysql")
@compiles(Like, "mariadb")
def _like_mysql(element: Like, compiler: SQLCompiler, **kw: object) -> str:
    # LIKE follows the column collation, case- and accent-insensitive by default; a binary
    # collation makes it exact. CONVERT first, so the collation fits any column charset.
    column = f"CONVERT({compiler.process(element.element, **kw)} USING utf8mb4)"
    pattern = compiler.process(element.pattern, **kw)
    escape = compiler.process(element.escape, **kw)
    if element.case_insensitive:
        column, pattern = f"LOWER({column})", f"LOWER({pattern})"
    return f"{column} COLLATE utf8mb4_bin LIKE {pattern} ESCAPE {escape}"


class NullsSmallest(UnaryExpression[Any]):
    """``expr ASC NULLS FIRST`` or ``expr DESC NULLS LAST``: NULL is the smallest value.

    It is a standard ``nulls_first()``/``nulls_last()`` element, so the ORM handles it like
    one (eager loads with LIMIT wrap it into subqueries), rendered without the NULLS
    clause on backends that already sort NULL first.
    """

    inherit_cache = True

    def __init__(self, ordered: UnaryExpression[Any]) -> None:
        descending = ordered.modifier is operators.desc_op
        modifier = operators.nulls_last_op if descending else operators.nulls_first_op
        super().__init__(ordered, modifier=modifier)


@compiles(NullsSmallest, *_NULLS_SMALLEST_NATIVELY)
def _nulls_native(element: NullsSmallest, compiler: SQLCompiler, **kw: object) -> str:
    return compiler.process(element.element, **kw)


@dataclass(frozen=True)
class Field:
    """A resolved field: its column expression and how to reach it from the model."""

    name: str
    expression: ColumnElement[Any]
    nullable: bool
    attribute: str | None  # the attribute on the model itself; None through relationships
    path: tuple[tuple[Any, bool], ...]  # (relationship attribute, uselist), from the model


def mapper_of(model: type[Any]) -> Mapper[Any]:
    """Return the mapper of *model*.

    Raises:
        ConfigurationError: *model* is not mapped.
    """
    try:
        mapper: Mapper[Any] = inspect(model)
    except NoInspectionAvailable:
        msg = f"{model!r} is not a mapped class."
        raise ConfigurationError(msg) from None
    return mapper


def hybrid_names(model: type[Any]) -> frozenset[str]:
    """Return the names of the hybrid properties of *model*."""
    descriptors = mapper_of(model).all_orm_descriptors
    return frozenset(k for k, v in descriptors.items() if isinstance(v, hybrid_property))


def is_query_expression(prop: object) -> bool:
    """Whether *prop* is a ``query_expression()``: a value only ``with_expression()`` sets."""
    return getattr(prop, "strategy_key", None) == (("query_expression", True),)


def resolve(model: type[Any], name: str) -> Field:
    """Resolve a whitelisted name: a column attribute, a hybrid or a relationship path.

    Raises:
        ConfigurationError: The name is whitelisted but the model has no such thing: the
            whitelist is at fault, not the client.
    """
    *hops, last = name.split(".")
    cls, path = model, []
    for hop in hops:
        relationship = mapper_of(cls).relationships.get(hop)
        if relationship is None:
            msg = f"{model.__name__}: {name!r} is whitelisted but {hop!r} is no relationship."
            raise ConfigurationError(msg, model=model)
        path.append((getattr(cls, hop), bool(relationship.uselist)))
        cls = relationship.mapper.class_
    mapper = mapper_of(cls)
    attribute = None if path else last
    if last in mapper.column_attrs and is_query_expression(mapper.column_attrs[last]):
        # Outside with_expression() it is a NULL placeholder: filtering or sorting on it
        # would silently match or order nothing.
        msg = (
            f"{model.__name__}: {name!r} is a query_expression(), which has no SQL of its "
            "own: filter with where= and sort with order_by= on the expression itself."
        )
        raise ConfigurationError(msg, model=model)
    if last in mapper.column_attrs:
        columns = mapper.column_attrs[last].columns
        nullable = len(columns) != 1 or getattr(columns[0], "nullable", True) is not False
    elif last in hybrid_names(cls):
        nullable = True
    else:
        msg = f"{model.__name__}: {name!r} is whitelisted but names no column or hybrid."
        raise ConfigurationError(msg, model=model)
    expression = getattr(cls, last).__clause_element__()
    return Field(name, expression, nullable, attribute, tuple(path))
