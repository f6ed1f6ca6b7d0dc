"""Adversarial tests of tenant tables read through their ``Table`` object, and of written values.

Tenant side: an ORM statement inside ``tenant("A")`` must never return tenant B's rows,
whatever its shape (query expressions, relationship loaders over a ``secondary`` tenant
table, aliased joined-table subclasses, set operations, lambdas, the compiled cache), and
an ORM statement that SQLAlchemy scopes by itself must not be refused.

Value side: a written value is stored exactly or refused with ``InvalidValueError``; a
value of the column's own Python type, a SQL expression in a single-row write, or a key
that identifies a row must not be refused or turned into a raw driver error, and a SQL
expression in a write of many rows is refused rather than bound as a parameter.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, ClassVar

import pytest
import pytest_asyncio
from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Integer,
    String,
    Uuid,
    column,
    exists,
    func,
    lambda_stmt,
    select,
    table,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    aliased,
    joinedload,
    lazyload,
    mapped_column,
    query_expression,
    relationship,
    selectinload,
    subqueryload,
    with_expression,
    with_polymorphic,
)

from reliability.support import WRITE_OPS, attack, own_tables, refused, write_outcomes
from sqla_repo import (
    IntegerPKMixin,
    InvalidValueError,
    RepositoryError,
    TenantMixin,
    all_tenants,
    tenant,
)
from sqla_repo.repository import BaseRepository

KEY = BigInteger().with_variant(Integer(), "sqlite")


class _Base(DeclarativeBase):
    pass


class Doc(IntegerPKMixin, TenantMixin, _Base):
    __tablename__ = "r3_docs"
    slug: Mapped[str] = mapped_column(String(20))
    expr: Mapped[str | None] = query_expression()
    # A viewonly many-to-many through the table of a tenant association model.
    tags: Mapped[list[Tag]] = relationship(secondary="r3_doc_tags", viewonly=True, lazy="raise")


class Item(IntegerPKMixin, TenantMixin, _Base):
    __tablename__ = "r3_items"
    doc_id: Mapped[int] = mapped_column(KEY, ForeignKey("r3_docs.id"))
    text: Mapped[str] = mapped_column(String(20))


class Tag(IntegerPKMixin, TenantMixin, _Base):
    __tablename__ = "r3_tags"
    name: Mapped[str] = mapped_column(String(20))


class DocTag(TenantMixin, _Base):
    """An association object whose table is also ``Doc.tags``'s ``secondary``."""

    __tablename__ = "r3_doc_tags"
    doc_id: Mapped[int] = mapped_column(KEY, ForeignKey("r3_docs.id"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(KEY, ForeignKey("r3_tags.id"), primary_key=True)


class Party(IntegerPKMixin, TenantMixin, _Base):
    """The base of a joined-table hierarchy."""

    __tablename__ = "r3_parties"
    __mapper_args__: ClassVar[dict[str, Any]] = {
        "polymorphic_on": "kind",
        "polymorphic_identity": "party",
    }
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(20))


class Company(Party):
    __tablename__ = "r3_companies"
    __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "company"}
    id: Mapped[int] = mapped_column(KEY, ForeignKey("r3_parties.id"), primary_key=True)
    secret: Mapped[str] = mapped_column(String(20))


class Val(_Base):
    """One column per Python type a written value is checked against."""

    __tablename__ = "r3_values"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    i: Mapped[int | None] = mapped_column(Integer)
    f: Mapped[float | None] = mapped_column(Double)
    s: Mapped[str | None] = mapped_column(String(20))
    day: Mapped[dt.date | None] = mapped_column(Date)
    ts: Mapped[dt.datetime | None] = mapped_column(DateTime)
    ext: Mapped[uuid.UUID | None] = mapped_column(Uuid, unique=True)
    code: Mapped[int | None] = mapped_column(Integer, unique=True)


class Vals(BaseRepository[Val]):
    pass


ITEMS = Item.__table__
DOCS = Doc.__table__
DOC_TAGS = DocTag.__table__
PARTIES = Party.__table__


@pytest_asyncio.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A committing session over this module's own tables, dropped afterwards."""
    async with own_tables(engine, _Base.metadata) as session:
        yield session


@pytest_asyncio.fixture
async def seeded(db: AsyncSession) -> AsyncSession:
    """Tenants A and B, each with a document, an item, a tag (linked) and a company."""
    with all_tenants():
        for name in ("A", "B"):
            doc = Doc(slug=f"d-{name}", tenant_id=name)
            tag = Tag(name=f"tag-{name}", tenant_id=name)
            db.add_all([doc, tag])
            await db.flush()
            db.add_all(
                [
                    DocTag(doc_id=doc.id, tag_id=tag.id, tenant_id=name),
                    Item(doc_id=doc.id, text=f"secret-{name}", tenant_id=name),
                    Company(name=f"c-{name}", secret=f"secret-{name}", tenant_id=name),
                ]
            )
            await db.flush()
    await db.commit()
    db.expunge_all()
    return db


async def test_query_expression_over_the_entity_stays_in_its_tenant(seeded):
    largest = select(func.max(Item.text)).scalar_subquery()
    outcome = await attack(seeded, select(Doc).options(with_expression(Doc.expr, largest)))
    assert refused(outcome) or [doc.expr for (doc,) in outcome] == ["secret-A"]


async def test_query_expression_over_the_table_isrefused(seeded):
    largest = select(func.max(ITEMS.c.text)).scalar_subquery()
    outcome = await attack(seeded, select(Doc).options(with_expression(Doc.expr, largest)))
    assert refused(outcome)


async def test_lightweight_table_construct_in_an_orm_select_isrefused(seeded):
    items = table("r3_items", column("text"))
    leaked = select(func.max(items.c.text)).scalar_subquery()
    outcome = await attack(seeded, select(Doc.slug, leaked))
    assert refused(outcome)


def _union_member(_ids: Any) -> Any:
    return select(Item.text).union(select(ITEMS.c.text))


def _exists(_ids: Any) -> Any:
    return select(Doc.slug).where(exists().where(ITEMS.c.text == "secret-B"))


def _core_alias_in_where(_ids: Any) -> Any:
    other = ITEMS.alias("other")
    return select(Item.id).where(Item.text < other.c.text)


def _select_from_core_join(_ids: Any) -> Any:
    return select(Doc.slug, ITEMS.c.text).select_from(DOCS.join(ITEMS))


def _from_statement(_ids: Any) -> Any:
    return select(Item).from_statement(select(ITEMS))


def _lambda(_ids: Any) -> Any:
    return lambda_stmt(lambda: select(Doc.slug, select(ITEMS.c.text).limit(1).scalar_subquery()))


def _entity_in_order_by_only(_ids: Any) -> Any:
    # Item.id in ORDER BY names the table, but the subquery's FROM is the plain table.
    inner = select(ITEMS.c.text).order_by(Item.id.desc()).limit(1).scalar_subquery()
    return select(Doc.slug, inner)


def _secondary_as_plain_join(_ids: Any) -> Any:
    return select(Tag.name).join(DOC_TAGS, DOC_TAGS.c.tag_id == Tag.id)


def _base_table_of_joined_subclass(_ids: Any) -> Any:
    # Party's entity covers r3_parties only; r3_companies is a FROM of its own.
    companies = Company.__table__
    return select(Party.name, companies.c.secret).join(companies, companies.c.id == Party.id)


REFUSED_FORMS = {
    "union-member": _union_member,
    "exists": _exists,
    "core-alias-in-where": _core_alias_in_where,
    "select-from-core-join": _select_from_core_join,
    "from-statement": _from_statement,
    "lambda-statement": _lambda,
    "entity-only-in-order-by": _entity_in_order_by_only,
    "subclass-table-beside-base-entity": _base_table_of_joined_subclass,
}


@pytest.mark.parametrize("cache", ["cached", "no-cache"])
@pytest.mark.parametrize("form", list(REFUSED_FORMS))
async def test_table_form_is_refused_after_running_in_all_tenants(seeded, form, cache):
    """Compiled first without tenant criteria (all_tenants()), then inside tenant("A").

    The refusal is made when the statement is compiled: the cached form compiled under
    ``all_tenants()`` must not be reused for a tenant.
    """
    statement = REFUSED_FORMS[form](None)
    options = {"compiled_cache": None} if cache == "no-cache" else {}
    with all_tenants():
        async with seeded.begin_nested():
            await seeded.execute(statement, execution_options=options)
    outcome = await attack(seeded, statement, **options)
    assert refused(outcome), outcome
    assert "secret-B" not in repr(outcome)


@pytest.mark.parametrize("form", ["union-member", "exists", "lambda-statement"])
async def test_table_form_is_refused_on_a_sync_session(seeded, form):
    statement = REFUSED_FORMS[form](None)

    def run(session: Session) -> Any:
        with tenant("A"):
            try:
                return session.execute(statement).all()
            except RepositoryError as exc:
                return exc

    assert refused(await seeded.run_sync(run))


def _with_polymorphic_flat() -> Any:
    everyone = with_polymorphic(Party, [Company], flat=True)
    return select(everyone.name, everyone.Company.secret)


ALLOWED_FORMS = {
    "table-column-beside-entity": (
        lambda: select(Item.text, ITEMS.c.doc_id).where(ITEMS.c.text != ""),
        [("secret-A",)],
    ),
    "base-table-beside-subclass-entity": (
        lambda: select(Company.secret, PARTIES.c.name),
        [("secret-A",)],
    ),
    "orm-union-in-aliased-entity": (
        lambda: select(aliased(Item, select(Item).union(select(Item)).subquery()).text),
        [("secret-A",)],
    ),
    "orm-except-in-subquery": (
        lambda: select(Item.text).where(
            Item.id.in_(select(Item.id).except_(select(Item.id).where(Item.id < 0)))
        ),
        [("secret-A",)],
    ),
    "with-polymorphic-flat": (
        _with_polymorphic_flat,
        [("c-A",)],
    ),
    "from-statement-of-the-entity": (
        lambda: select(Item.text).from_statement(select(Item.text)),
        [("secret-A",)],
    ),
}


@pytest.mark.parametrize("form", list(ALLOWED_FORMS))
async def test_scoped_orm_form_runs_and_stays_in_its_tenant(seeded, form):
    build, expected = ALLOWED_FORMS[form]
    outcome = await attack(seeded, build())
    assert not isinstance(outcome, RepositoryError), outcome
    assert [tuple(row)[:1] for row in outcome] == expected


# -- ORM statements SQLAlchemy scopes by itself, refused ----------------------------------

ALIASED_SUBCLASS = (
    "aliased() of a joined-table subclass (not flat) wraps parties JOIN companies in a "
    "Core SELECT of the plain tables; the loader criteria scope that alias (the check "
    "disabled, only tenant A's row is returned), yet the compile-time check refuses it"
)


async def test_aliased_joined_subclass_is_notrefused(seeded):
    company = aliased(Company)
    outcome = await attack(seeded, select(company.name, company.secret))
    assert outcome == [("c-A", "secret-A")]


async def test_self_join_of_a_joined_subclass_is_notrefused(seeded):
    other = aliased(Company)
    statement = select(Company.name, other.name).join(other, other.id == Company.id)
    assert await attack(seeded, statement) == [("c-A", "c-A")]


async def test_aliased_with_polymorphic_is_notrefused(seeded):
    everyone = with_polymorphic(Party, [Company], aliased=True)
    outcome = await attack(seeded, select(everyone.name, everyone.Company.secret))
    assert outcome == [("c-A", "secret-A")]


SECONDARY = (
    "a relationship whose secondary is the table of a tenant model: the lazy and "
    "selectin loaders (and any()) name the secondary Table in their WHERE, which the "
    "check refuses, though the documentation says many-to-many loads through a "
    "secondary table are covered and joined/subquery loads of the same relationship run"
)


def _tag_names(docs: Any) -> list[list[str]]:
    return [sorted(tag.name for tag in doc.tags) for doc in docs]


@pytest.mark.parametrize(
    "loader",
    [
        pytest.param(joinedload, id="joined"),
        pytest.param(subqueryload, id="subquery"),
        pytest.param(selectinload, id="selectin"),
    ],
)
async def test_secondary_tenant_table_eager_loads(seeded, loader):
    with tenant("A"):
        docs = (await seeded.scalars(select(Doc).options(loader(Doc.tags)))).unique().all()
    assert _tag_names(docs) == [["tag-A"]]


async def test_secondary_tenant_table_lazy_load_on_a_sync_session(seeded):
    def load(session: Session) -> list[list[str]]:
        with tenant("A"):
            docs = session.scalars(select(Doc).options(lazyload(Doc.tags))).all()
            return _tag_names(docs)

    assert await seeded.run_sync(load) == [["tag-A"]]


async def test_secondary_tenant_table_any_isrefused(seeded):
    """``any()`` through a ``secondary`` tenant table is refused.

    It reads the table in an EXISTS of the application's statement, where no criteria
    reach it. The ORM's own loads of the relationship run (above); query the association
    model for the same question.
    """
    statement = select(Doc.slug).where(Doc.tags.any(Tag.name.startswith("tag-")))
    assert refused(await attack(seeded, statement))


async def test_join_through_a_secondary_tenant_table_stays_in_its_tenant(seeded):
    outcome = await attack(seeded, select(Doc.slug, Tag.name).join(Doc.tags))
    assert outcome == [("d-A", "tag-A")]


# -- written values -------------------------------------------------------------------------


class Colour(str, enum.Enum):
    RED = "red"


class Level(int, enum.Enum):
    HIGH = 3


class Size(enum.IntEnum):
    BIG = 9


class Slug(str):
    __slots__ = ()


ACCEPTED = {
    "bool-into-integer": ("i", True, 1),
    "int-enum-into-integer": ("i", Size.BIG, 9),
    "str-subclass-into-string": ("s", Slug("slug"), "slug"),
    "str-mixin-enum-into-string": ("s", Colour.RED, "red"),
    "decimal-into-double": ("f", Decimal("0.5"), 0.5),
    "int-into-double": ("f", 3, 3.0),
    "date-into-datetime": ("ts", dt.date(2024, 1, 2), dt.datetime(2024, 1, 2)),  # noqa: DTZ001
}


@pytest.mark.parametrize("case", list(ACCEPTED))
async def test_value_of_the_columns_python_type_is_stored(db, case):
    column_, value, expected = ACCEPTED[case]
    outcomes = await write_outcomes(db, Vals(db), column_, value)
    assert outcomes == dict.fromkeys(WRITE_OPS, ("stored", expected))


# Values the column cannot hold exactly (once stored changed), or that some backend's
# driver binds as something else: refused on every backend.
CHANGED = {
    "int-mixin-enum-into-integer": (
        "i",
        Level.HIGH,
        "an (int, Enum) member is an int, but asyncmy binds str(member), 'Level.HIGH'",
    ),
    "int-beyond-2**53-into-double": (
        "f",
        2**53 + 1,
        (
            "an int beyond 2**53 passes the number check of a Double column and is stored "
            "rounded (9007199254740992.0) on every backend"
        ),
    ),
    "datetime-into-date": (
        "day",
        dt.datetime(2024, 1, 2, 12, 30),  # noqa: DTZ001
        (
            "a datetime is a date subclass: a Date column takes it and every backend drops "
            "the time (MariaDB with a warning only), though a date filter refuses a datetime"
        ),
    ),
}


@pytest.mark.parametrize("case", list(CHANGED))
async def test_value_the_column_would_change_isrefused(db, case):
    column_, value, _why = CHANGED[case]
    outcomes = await write_outcomes(db, Vals(db), column_, value)
    wrong = {op: o for op, o in outcomes.items() if not isinstance(o, InvalidValueError)}
    assert not wrong


# -- SQL expressions as written values ------------------------------------------------------


async def _row(db: AsyncSession, column_: str, row_id: int) -> Any:
    return (
        await db.execute(select(Val.__table__.c[column_]).where(Val.__table__.c.id == row_id))
    ).scalar_one()


@pytest.mark.parametrize("op", ["update", "update_where"])
@pytest.mark.parametrize("form", ["expression", "attribute"])
async def test_sql_expression_in_an_update_is_evaluated(db, op, form):
    """``{"i": Val.i + 1}`` and ``{"i": Val.code}``: computed by the database."""
    repo = Vals(db)
    row_id = (await repo.create({"i": 1, "code": 5})).id
    await db.commit()
    value = Val.i + 1 if form == "expression" else Val.code
    if op == "update":
        obj = await repo.update(row_id, {"i": value})
        assert obj.i == (2 if form == "expression" else 5)
    else:
        assert await repo.update_where(Val.id == row_id, values={"i": value}) == 1
    assert await _row(db, "i", row_id) == (2 if form == "expression" else 5)


@pytest.mark.parametrize("op", ["bulk_update", "bulk_insert", "bulk_create", "upsert"])
async def test_sql_expression_in_a_bulk_write_isrefused(db, op):
    """Rows of a bulk write are sent as parameters: an expression is refused, not bound."""
    repo = Vals(db)
    row_id = (await repo.create({"s": "x"})).id
    await db.commit()
    value = func.lower("ABC")
    writes = {
        "bulk_update": lambda: repo.bulk_update([{"id": row_id, "s": value}]),
        "bulk_insert": lambda: repo.bulk_insert([{"id": row_id + 1, "s": value}]),
        "bulk_create": lambda: repo.bulk_create([{"s": value}]),
        "upsert": lambda: repo.upsert({"id": row_id, "s": value}, conflict_on=["id"]),
    }
    with pytest.raises(InvalidValueError) as info:
        await writes[op]()
    assert info.value.detail["reason"] == "sql_expression"
    assert await repo.count() == 1
    assert await _row(db, "s", row_id) == "x"


@pytest.mark.parametrize("form", ["attribute", "expression"])
async def test_column_reference_in_create_isrefused(db, form):
    repo = Vals(db)
    value = Val.code if form == "attribute" else Val.code + 1
    with pytest.raises(InvalidValueError) as info:
        await repo.create({"i": value, "code": 5})
    assert info.value.detail["reason"] == "sql_expression"


# -- keys that identify a row -----------------------------------------------------------------


async def test_conflict_keys_as_text_are_coerced(db):
    """``upsert`` and ``bulk_get_or_create`` compare their keys as the column's type."""
    repo = Vals(db)
    ext = uuid.UUID(int=77)
    row_id = (await repo.create({"i": 1, "ext": ext})).id
    await db.commit()
    await repo.upsert({"id": str(row_id), "i": 7}, conflict_on=["id"])
    found = await repo.bulk_get_or_create([{"ext": str(ext)}], conflict_on=["ext"])
    assert [obj.id for obj in found] == [row_id]
    assert await _row(db, "i", row_id) == 7


@pytest.mark.parametrize("key", ["ext", "code"])
async def test_get_or_create_keys_as_text_find_the_row(db, key):
    repo = Vals(db)
    ext = uuid.UUID(int=77)
    row_id = (await repo.create({"ext": ext, "code": 5})).id
    await db.commit()
    found, created = await repo.get_or_create(**{key: str(ext) if key == "ext" else "5"})
    assert (found.id, created) == (row_id, False)


@pytest.mark.parametrize(
    "given",
    [
        "int",
        "text",
    ],
)
async def test_bulk_update_by_key_refreshes_the_loaded_object(db, given):
    repo = Vals(db)
    row_id = (await repo.create({"i": 1})).id
    await db.commit()
    loaded = await repo.get(row_id)
    key = row_id if given == "int" else str(row_id)
    assert await repo.bulk_update([{"id": key, "i": 8}]) == 1
    assert await _row(db, "i", row_id) == 8
    assert loaded.i == 8
