"""Adversarial tests of the plain-table check, the written-value checks and rollbacks.

Tenant side: inside ``tenant("A")`` an ORM statement must never return or copy tenant B's
rows, whatever the shape that the check's allow-rules let through (a relationship's
``secondary`` tenant table beside an entity it links, explicit ``correlate()`` in a
subquery that cannot correlate, an aliased entity over a Core SELECT of the plain table,
a ``column_property()`` or ``query_expression()`` default over the table); and ORM
statements that SQLAlchemy scopes by itself must not be refused.

Value side: a written value is stored exactly or refused with ``InvalidValueError``, the
same way on every backend; a value SQLAlchemy stores as given is not refused.

Rollbacks: an object ``create()`` or ``bulk_create()`` inserted with ``INSERT … RETURNING``
leaves the session with the transaction that wrote it, however that transaction ends, and
stays when it commits.
"""

from __future__ import annotations

import contextlib
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
    Boolean,
    Date,
    DateTime,
    Double,
    Enum,
    ForeignKey,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Time,
    delete,
    func,
    literal,
    select,
    true,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.associationproxy import AssociationProxy, association_proxy
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.ext.declarative import ConcreteBase
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import (
    DeclarativeBase,
    Load,
    Mapped,
    Session,
    aliased,
    column_property,
    contains_eager,
    mapped_column,
    query_expression,
    relationship,
    with_expression,
)

import flavours
from reliability.support import WRITE_OPS, attack, own_tables, refused, write_outcomes
from sqla_repo import (
    IntegerPKMixin,
    InvalidValueError,
    RepositoryError,
    TenantMixin,
    all_tenants,
    tenant,
)
from sqla_repo._plain_tables import RELATIONSHIP_LOAD
from sqla_repo.mixins.tenant import TENANT_ID_TYPE
from sqla_repo.repository import BaseRepository

KEY = BigInteger().with_variant(Integer(), "sqlite")


class _Base(DeclarativeBase):
    pass


class Doc(IntegerPKMixin, TenantMixin, _Base):
    __tablename__ = "r4_docs"
    slug: Mapped[str] = mapped_column(String(20))
    expr: Mapped[str | None] = query_expression()
    tags: Mapped[list[Tag]] = relationship(secondary="r4_doc_tags", viewonly=True, lazy="raise")
    tag_names: AssociationProxy[list[str]] = association_proxy("tags", "name")

    @hybrid_property
    def shout(self) -> str:
        return self.slug.upper()

    @shout.inplace.expression
    @classmethod
    def _shout(cls) -> Any:
        return func.upper(cls.slug)


class Item(IntegerPKMixin, TenantMixin, _Base):
    __tablename__ = "r4_items"
    doc_id: Mapped[int] = mapped_column(KEY, ForeignKey("r4_docs.id"))
    text: Mapped[str] = mapped_column(String(20))


class Tag(IntegerPKMixin, TenantMixin, _Base):
    __tablename__ = "r4_tags"
    name: Mapped[str] = mapped_column(String(20))


class DocTag(TenantMixin, _Base):
    """An association object (with a column of its own) that is ``Doc.tags``'s secondary."""

    __tablename__ = "r4_doc_tags"
    doc_id: Mapped[int] = mapped_column(KEY, ForeignKey("r4_docs.id"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(KEY, ForeignKey("r4_tags.id"), primary_key=True)
    note: Mapped[str] = mapped_column(String(20))


ITEMS = Item.__table__
DOCS = Doc.__table__
DOC_TAGS = DocTag.__table__


class Board(IntegerPKMixin, TenantMixin, _Base):
    """Mapped SQL expressions over the plain ``r4_items`` table, loaded with the entity."""

    __tablename__ = "r4_boards"
    name: Mapped[str] = mapped_column(String(20))
    top: Mapped[str | None] = column_property(select(func.max(ITEMS.c.text)).scalar_subquery())
    low: Mapped[str | None] = query_expression(
        default_expr=select(func.max(ITEMS.c.text)).scalar_subquery()
    )


class Boards(BaseRepository[Board]):
    pass


class Pet(ConcreteBase, IntegerPKMixin, TenantMixin, _Base):
    """Concrete-table inheritance: entities load from a ``polymorphic_union`` of plain tables."""

    __tablename__ = "r4_pets"
    __mapper_args__: ClassVar[dict[str, Any]] = {
        "polymorphic_identity": "pet",
        "concrete": True,
    }
    name: Mapped[str] = mapped_column(String(20))


class Dog(Pet):
    __tablename__ = "r4_dogs"
    __mapper_args__: ClassVar[dict[str, Any]] = {
        "polymorphic_identity": "dog",
        "concrete": True,
    }
    id: Mapped[int] = mapped_column(KEY, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(TENANT_ID_TYPE, index=True)
    name: Mapped[str] = mapped_column(String(20))
    bark: Mapped[str] = mapped_column(String(20))


class Free(IntegerPKMixin, _Base):
    """A model without tenant scoping."""

    __tablename__ = "r4_free"
    label: Mapped[str] = mapped_column(String(20))


@pytest_asyncio.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A committing session over this module's own tables, dropped afterwards."""
    async with own_tables(engine, _Base.metadata) as session:
        yield session


@pytest_asyncio.fixture
async def seeded(db: AsyncSession) -> AsyncSession:
    """Tenants A and B, each with a document, an item, a linked tag, a board and a dog.

    Every value of tenant B that a leak could show holds ``secret-B`` or ``d-B``.
    """
    with all_tenants():
        for number, name in enumerate(("A", "B"), start=1):
            doc = Doc(slug=f"d-{name}", tenant_id=name)
            tag = Tag(name=f"tag-{name}", tenant_id=name)
            db.add_all([doc, tag])
            await db.flush()
            db.add_all(
                [
                    DocTag(doc_id=doc.id, tag_id=tag.id, note=f"secret-{name}", tenant_id=name),
                    Item(doc_id=doc.id, text=f"secret-{name}", tenant_id=name),
                    Board(name=f"b-{name}", tenant_id=name),
                    Dog(id=100 + number, name=f"dog-{name}", bark=f"secret-{name}", tenant_id=name),
                ]
            )
            await db.flush()
        db.add(Free(label="free"))
    await db.commit()
    db.expunge_all()
    return db


def _leaks(outcome: Any) -> bool:
    return not isinstance(outcome, RepositoryError) and (
        "secret-B" in repr(outcome) or "d-B" in repr(outcome)
    )


# -- reads of tenant B that the allow-rules let through -------------------------------------

SECONDARY = (
    "a relationship's secondary tenant table is allowed wherever an entity it links is in "
    "the same SELECT, whatever the statement reads of it: the association rows (and their "
    "own columns) of every tenant are returned"
)
CORRELATE = (
    "a plain table in a SELECT told to correlate() / correlate_except() is allowed when an "
    "enclosing SELECT has the entity, but a subquery or CTE in FROM never correlates: the "
    "table stays its own FROM and every tenant's rows are read"
)
ALIASED_CORE = (
    "the SELECT inside aliased(Model, <Core select of the plain table>) is never looked at; "
    "the loader criteria filter only the columns the subquery exposes, so a subquery that "
    "relabels or leaves out tenant_id returns every tenant's rows"
)


def _correlated_subquery_in_from() -> Any:
    inner = select(ITEMS.c.text).correlate(ITEMS).subquery()
    return select(Item.id, inner.c.text)


def _correlate_except_subquery_in_from() -> Any:
    inner = select(ITEMS.c.text).correlate_except(DOCS).subquery()
    return select(Item.id, inner.c.text)


def _correlated_cte() -> Any:
    inner = select(ITEMS.c.text).correlate(ITEMS).cte("r4_texts")
    return select(Item.id, inner.c.text)


def _relabelled_tenant() -> Any:
    return select(ITEMS.c.id, ITEMS.c.doc_id, ITEMS.c.text, literal("A").label("tenant_id"))


def _aliased_over_relabelled_select() -> Any:
    return select(aliased(Item, _relabelled_tenant().subquery()).text)


def _aliased_over_select_without_tenant() -> Any:
    inner = select(ITEMS.c.id, ITEMS.c.doc_id, ITEMS.c.text).subquery()
    return select(aliased(Item, inner).text)


def _union_with_aliased() -> Any:
    other = aliased(Item, _relabelled_tenant().subquery())
    return select(Item.text).union_all(select(other.text))


def _select_from_aliased() -> Any:
    other = aliased(Item, _relabelled_tenant().subquery())
    return select(func.count()).select_from(other).where(other.text == "secret-B")


LEAKS = {
    "secondary-beside-parent": (lambda: select(Doc.slug, DOC_TAGS.c.note), SECONDARY),
    "secondary-joined-on-true": (
        lambda: select(Tag.name, DOC_TAGS.c.note).join(DOC_TAGS, true()),
        SECONDARY,
    ),
    "secondary-in-subquery-naming-parent": (
        lambda: select(
            Doc.slug, select(func.max(DOC_TAGS.c.note)).where(Doc.id > 0).scalar_subquery()
        ),
        SECONDARY,
    ),
    "correlate-in-from-subquery": (_correlated_subquery_in_from, CORRELATE),
    "correlate-except-in-from-subquery": (_correlate_except_subquery_in_from, CORRELATE),
    "correlate-in-cte": (_correlated_cte, CORRELATE),
    "aliased-over-relabelled-select": (_aliased_over_relabelled_select, ALIASED_CORE),
    "aliased-over-select-without-tenant-id": (_aliased_over_select_without_tenant, ALIASED_CORE),
    "union-with-aliased": (_union_with_aliased, ALIASED_CORE),
}


@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")
@pytest.mark.parametrize(
    "form",
    list(LEAKS),
)
async def test_plain_table_form_does_not_read_another_tenant(seeded, form):
    outcome = await attack(seeded, LEAKS[form][0]())
    assert not _leaks(outcome), outcome


@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")
async def test_aliased_count_over_a_core_select_stays_in_its_tenant(seeded):
    """``count()`` of another tenant's rows would leak no secret, only a number: refused."""
    assert refused(await attack(seeded, _select_from_aliased()))


@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")
async def test_aliased_over_a_core_select_on_a_sync_session(seeded):
    def run(session: Session) -> Any:
        with tenant("A"):
            try:
                return session.execute(_aliased_over_relabelled_select()).all()
            except RepositoryError as exc:
                return exc

    assert not _leaks(await seeded.run_sync(run))


MAPPED_EXPRESSION = (
    "a column_property() or query_expression(default_expr=...) over the plain table is "
    "rendered only while the ORM compiles select(Board), outside the statement the check "
    "walks: loading the entity (select(), get()) returns the other tenant's value, though "
    "selecting the attribute alone is refused"
)


@pytest.mark.parametrize("attribute", ["column-property", "query-expression-default"])
@pytest.mark.parametrize("load", ["select", "repository-get", "after-all-tenants"])
async def test_mapped_expression_over_the_table_stays_in_its_tenant(seeded, attribute, load):
    with all_tenants():
        board_id = (await seeded.execute(select(Board.id).where(Board.name == "b-A"))).scalar()
        if load == "after-all-tenants":  # the same statement compiled first without criteria
            (await seeded.scalars(select(Board))).all()
    seeded.expunge_all()
    with tenant("A"):
        try:
            if load == "repository-get":
                board = await Boards(seeded).get(board_id)
            else:
                board = (await seeded.scalars(select(Board))).one()
        except RepositoryError as exc:
            refusal = exc
        else:
            refusal = None
    if refusal is not None:
        assert refused(refusal)
        return
    value = board.top if attribute == "column-property" else board.low
    assert value == "secret-A"


async def test_mapped_expression_selected_alone_isrefused(seeded):
    assert refused(await attack(seeded, select(Board.name, Board.top)))
    assert refused(await attack(seeded, select(Board.low)))


async def test_orm_update_does_not_copy_another_tenants_association_rows(seeded):
    copy = select(func.max(DOC_TAGS.c.note)).where(Doc.id > 0).scalar_subquery()
    with tenant("A"), contextlib.suppress(RepositoryError):
        async with seeded.begin_nested():
            await seeded.execute(update(Doc).values(slug=copy))
    with all_tenants():
        slugs = (await seeded.execute(select(Doc.tenant_id, Doc.slug))).all()
    assert "secret-B" not in repr(slugs)


# -- ORM statements SQLAlchemy scopes by itself -----------------------------------------------


async def test_with_expression_over_the_entitys_own_columns_runs(seeded):
    outcome = await attack(seeded, select(Doc).options(with_expression(Doc.expr, Doc.shout)))
    assert not isinstance(outcome, RepositoryError), outcome
    assert [doc.expr for (doc,) in outcome] == ["D-A"]


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        pytest.param(lambda: select(Pet), [("Dog", "dog-A")], id="base-entity"),
        pytest.param(lambda: select(Dog), [("Dog", "dog-A")], id="subclass-entity"),
        pytest.param(lambda: select(Dog.bark), ["secret-A"], id="subclass-column"),
    ],
)
async def test_concrete_polymorphic_load_runs(seeded, form, expected):
    outcome = await attack(seeded, form())
    assert not isinstance(outcome, RepositoryError), outcome
    got = [
        (type(row[0]).__name__, row[0].name) if isinstance(row[0], Pet) else row[0]
        for row in outcome
    ]
    assert got == expected


def _first(rows: Any) -> list[Any]:
    return [row[0] for row in rows]


def _tag_names(rows: Any) -> list[Any]:
    return [sorted(tag.name for tag in doc.tags) for (doc,) in rows]


SCOPED_FORMS = {
    "contains-eager-through-secondary": (
        lambda: select(Doc).join(Doc.tags).options(contains_eager(Doc.tags)),
        _tag_names,
        [["tag-A"]],
    ),
    "load-joinedload-secondary": (
        lambda: select(Doc).options(Load(Doc).joinedload(Doc.tags)),
        _tag_names,
        [["tag-A"]],
    ),
    "hybrid-property": (lambda: select(Doc.shout), _first, ["D-A"]),
    "with-expression-over-unscoped-model": (
        lambda: select(Doc).options(
            with_expression(Doc.expr, select(func.max(Free.label)).scalar_subquery())
        ),
        lambda rows: [doc.expr for (doc,) in rows],
        ["free"],
    ),
    "aliased-over-table-alias": (
        lambda: select(aliased(Item, ITEMS.alias()).text),
        _first,
        ["secret-A"],
    ),
    "aliased-over-full-core-select": (
        lambda: select(aliased(Item, select(ITEMS).subquery()).text),
        _first,
        ["secret-A"],
    ),
    "table-columns-from-entity": (
        lambda: select(ITEMS.c.text).select_from(Item),
        _first,
        ["secret-A"],
    ),
    "with-only-columns-keeping-froms": (
        lambda: select(Item).with_only_columns(ITEMS.c.text, maintain_column_froms=True),
        _first,
        ["secret-A"],
    ),
}


@pytest.mark.parametrize("form", list(SCOPED_FORMS))
async def test_scoped_orm_form_runs_and_stays_in_its_tenant(seeded, form):
    build, read, expected = SCOPED_FORMS[form]
    outcome = await attack(seeded, build())
    assert not isinstance(outcome, RepositoryError), outcome
    assert read(outcome) == expected


@pytest.mark.parametrize("tag", ["tag-A", "tag-B"])
async def test_association_proxy_through_a_secondary_tenant_table_isrefused(seeded, tag):
    """``contains()`` through a ``secondary`` tenant table is refused.

    It reads the table in an EXISTS of the application's statement, where no criteria
    reach it (the ORM's own loads of the relationship run). Query the association model.
    """
    statement = select(Doc.slug).where(Doc.tag_names.contains(tag))
    assert refused(await attack(seeded, statement))


async def test_plain_table_only_columns_arerefused(seeded):
    """``with_only_columns()`` dropping the entity leaves a plain read: refused."""
    statement = select(Item).with_only_columns(ITEMS.c.text)
    assert refused(await attack(seeded, statement))


# -- written values -------------------------------------------------------------------------


class Colour(str, enum.Enum):
    RED = "red"


class Level(int, enum.Enum):
    HIGH = 3


class Ratio(float, enum.Enum):
    HALF = 0.5


class Val(_Base):
    """One column per plain SQL type a written value is checked against."""

    __tablename__ = "r4_values"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    f: Mapped[float | None] = mapped_column(Double)
    n: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    s: Mapped[str | None] = mapped_column(String(40))
    day: Mapped[dt.date | None] = mapped_column(Date)
    ts: Mapped[dt.datetime | None] = mapped_column(DateTime)
    tm: Mapped[dt.time | None] = mapped_column(Time)
    flag: Mapped[bool | None] = mapped_column(Boolean)
    blob: Mapped[bytes | None] = mapped_column(LargeBinary)
    colour: Mapped[Colour | None] = mapped_column(Enum(Colour))


class Vals(BaseRepository[Val]):
    pass


async def _outcomes(db: AsyncSession, column_: str, value: Any) -> dict[str, Any]:
    """Per write path: ``"refused"`` (``InvalidValueError``), the value read back, or the error."""
    outcomes = await write_outcomes(db, Vals(db), column_, value)
    return {op: "refused" if isinstance(o, InvalidValueError) else o for op, o in outcomes.items()}


STORED = {
    "decimal-into-numeric": ("n", Decimal("1.25"), Decimal("1.25")),
    "int-into-numeric": ("n", 3, Decimal("3.00")),
    "float-into-numeric": ("n", 0.5, Decimal("0.50")),
    "date-into-date": ("day", dt.date(2024, 1, 2), dt.date(2024, 1, 2)),
    "time-into-time": ("tm", dt.time(12, 30), dt.time(12, 30)),
    "bool-into-boolean": ("flag", False, False),
    "one-into-boolean": ("flag", 1, True),
    "bytes-into-binary": ("blob", b"\x00\xff", b"\x00\xff"),
    "member-into-enum": ("colour", Colour.RED, Colour.RED),
    "name-into-enum": ("colour", "RED", Colour.RED),
    "str-enum-member-into-string": ("s", Colour.RED, "red"),
    "exact-big-int-into-double": ("f", 2**60, float(2**60)),
}


@pytest.mark.parametrize("case", list(STORED))
async def test_value_of_the_columns_type_is_stored(db, case):
    column_, value, expected = STORED[case]
    assert await _outcomes(db, column_, value) == dict.fromkeys(WRITE_OPS, ("stored", expected))


REFUSED = {
    "uuid-into-string": ("s", uuid.UUID(int=5)),
    "text-into-boolean": ("flag", "yes"),
    "two-into-boolean": ("flag", 2),
    "text-into-binary": ("blob", "abc"),
    "text-into-date": ("day", "2024-01-02"),
}


@pytest.mark.parametrize("case", list(REFUSED))
async def test_value_of_another_type_isrefused(db, case):
    column_, value = REFUSED[case]
    assert await _outcomes(db, column_, value) == dict.fromkeys(WRITE_OPS, "refused")


MIXED_ENUM = (
    "an (int, Enum) or (float, Enum) member passes the check of a Double or Numeric column "
    "(only Integer columns refuse (int, Enum) members): SQLite and PostgreSQL store the "
    "number, MariaDB refuses the str() asyncmy binds; the checks are not the same on every "
    "backend"
)
TEXT_INTO_TEMPORAL = (
    "text into a plain DateTime or Time column is not refused by the type check: MariaDB "
    "parses and stores it, PostgreSQL and SQLite refuse it"
)
CHANGED = {
    "int-enum-into-double": ("f", Level.HIGH, ("sqlite", "postgresql"), MIXED_ENUM),
    "int-enum-into-numeric": ("n", Level.HIGH, ("sqlite", "postgresql"), MIXED_ENUM),
    "float-enum-into-double": ("f", Ratio.HALF, ("sqlite", "postgresql"), MIXED_ENUM),
    "text-into-datetime": ("ts", "2024-01-02 03:04:05", ("mariadb",), TEXT_INTO_TEMPORAL),
    "text-into-time": ("tm", "12:30:00", ("mariadb",), TEXT_INTO_TEMPORAL),
    "datetime-into-time": (
        "tm",
        dt.datetime(2024, 1, 2, 12, 30),  # noqa: DTZ001
        ("postgresql", "mariadb"),
        (
            "a datetime into a Time column: PostgreSQL and MariaDB store the time and drop "
            "the date, SQLite refuses it (the Date column's datetime check has no Time twin)"
        ),
    ),
    "aware-time-into-time": (
        "tm",
        dt.time(12, 30, tzinfo=dt.timezone(dt.timedelta(hours=5))),
        ("sqlite", "postgresql", "mariadb"),
        (
            "an aware time into a Time column without time zone is stored with its offset "
            "dropped on every backend (an aware datetime into DateTime is refused)"
        ),
    ),
    "integral-decimal-beyond-2**53-into-double": (
        "f",
        Decimal(2**53 + 1),
        ("sqlite", "postgresql", "mariadb"),
        (
            "an integral Decimal beyond 2**53 into a Double column is stored rounded "
            "(9007199254740992.0) on every backend; only int values get the exactness check"
        ),
    ),
}


@pytest.mark.parametrize("case", list(CHANGED))
async def test_value_a_backend_changes_or_refuses_is_refused_everywhere(db, case):
    column_, value, _before, _why = CHANGED[case]
    assert await _outcomes(db, column_, value) == dict.fromkeys(WRITE_OPS, "refused")


async def test_enum_value_text_into_enum_column_is_stored(db):
    outcomes = await _outcomes(db, "colour", "red")
    assert outcomes == dict.fromkeys(WRITE_OPS, ("stored", Colour.RED))


# -- rollbacks of statement-path writes -----------------------------------------------------


class Note(IntegerPKMixin, _Base):
    __tablename__ = "r4_notes"
    name: Mapped[str] = mapped_column(String(20), unique=True)


class Notes(BaseRepository[Note]):
    pass


async def _names(db: AsyncSession) -> list[str]:
    return list((await db.execute(select(Note.__table__.c.name))).scalars().all())


@pytest.mark.usefixtures("flavour")
@pytest.mark.parametrize("write", ["create", "bulk_create"])
async def test_released_savepoint_then_rollback_takes_the_objects_away(db, write):
    """Released with its SAVEPOINT into the outer transaction, then rolled back with it."""
    repo = flavours.make_repo(Notes, db)
    async with db.begin_nested():
        if write == "create":
            objs = [await repo.create({"name": "gone"})]
        else:
            objs = await repo.bulk_create([{"name": "gone"}, {"name": "gone-too"}])
    ids = [obj.id for obj in objs]
    await db.rollback()
    assert not any(sa_inspect(obj).persistent for obj in objs)
    assert [await repo.get_one_or_none(id=i) for i in ids] == [None] * len(ids)
    assert await _names(db) == []


@pytest.mark.usefixtures("flavour")
async def test_savepoint_rollback_keeps_what_the_outer_transaction_wrote(db):
    repo = flavours.make_repo(Notes, db)
    kept = await repo.create({"name": "kept"})
    with contextlib.suppress(LookupError):
        async with db.begin_nested():
            gone = await repo.create({"name": "gone"})
            raise LookupError
    assert sa_inspect(kept).persistent
    assert not sa_inspect(gone).persistent
    assert await repo.get(kept.id) is kept
    await db.commit()
    assert await _names(db) == ["kept"]


@pytest.mark.usefixtures("flavour")
@pytest.mark.parametrize("expire_on_commit", [False, True])
async def test_committed_object_survives_a_later_rollback(db, engine, expire_on_commit):
    del db  # requested for the tables
    async with AsyncSession(engine, expire_on_commit=expire_on_commit) as session:
        repo = flavours.make_repo(Notes, session)
        obj = await repo.create({"name": "kept"})
        obj_id = obj.id
        await session.commit()
        gone = await repo.create({"name": "gone"})
        await session.rollback()
        assert sa_inspect(obj).persistent
        assert not sa_inspect(gone).persistent
        assert await repo.get(obj_id) is obj
        assert obj.name == "kept"
        assert await _names(session) == ["kept"]


@pytest.mark.usefixtures("flavour")
@pytest.mark.parametrize("given", ["mapping", "instance"])
async def test_stale_object_gives_way_and_the_new_one_leaves_with_the_rollback(db, given):
    """A row deleted behind the session, inserted again under its key, then rolled back."""
    repo = flavours.make_repo(Notes, db)
    stale = await repo.create({"name": "old"})
    await db.commit()
    await db.execute(delete(Note.__table__).where(Note.__table__.c.id == stale.id))
    await db.commit()
    key = stale.id
    values = {"id": key, "name": "new"}
    fresh = await repo.create(values if given == "mapping" else Note(**values))
    assert fresh.name == "new"
    assert await repo.get(key) is fresh
    await db.rollback()
    assert not sa_inspect(fresh).persistent
    assert await repo.get_one_or_none(id=key) is None
    assert await _names(db) == []


async def test_the_relationship_load_option_cannot_be_claimed_by_the_application(seeded):
    """A statement that sets the relationship-load option itself is checked like any other.

    Only the session hooks mark the ORM's own relationship loads.
    """
    statement = select(Doc.slug, DOC_TAGS.c.note).execution_options(**{RELATIONSHIP_LOAD: True})
    assert refused(await attack(seeded, statement))
