"""The exception hierarchy: classes, codes and client-safe details."""

from __future__ import annotations

import inspect
import pickle
from typing import Any

import pytest

from sqla_repo import exceptions
from sqla_repo.exceptions import (
    CheckViolationError,
    ConcurrencyError,
    ConfigurationError,
    ConflictError,
    ForeignKeyViolationError,
    InvalidFilterError,
    InvalidValueError,
    MultipleResultsFoundError,
    NaiveDatetimeError,
    NotFoundError,
    NotNullViolationError,
    RepositoryError,
    StatementTimeoutError,
    TenantMismatchError,
    TenantRequiredError,
    UniqueViolationError,
)


class User:
    """Stands in for a mapped class."""


ALL = [getattr(exceptions, name) for name in exceptions.__all__]
CONFLICTS = [
    UniqueViolationError,
    ForeignKeyViolationError,
    NotNullViolationError,
    CheckViolationError,
]


def _ids(classes: list[type[RepositoryError]]) -> list[str]:
    return [cls.__name__ for cls in classes]


class TestHierarchy:
    def test_all_lists_every_exception_class(self) -> None:
        """``__all__`` names every exception class the module defines."""
        defined = {
            name
            for name, obj in vars(exceptions).items()
            if inspect.isclass(obj)
            and issubclass(obj, BaseException)
            and obj.__module__ == exceptions.__name__
        }
        assert defined == set(exceptions.__all__)

    @pytest.mark.parametrize("cls", ALL, ids=_ids(ALL))
    def test_everything_is_a_repository_error(self, cls: type[RepositoryError]) -> None:
        """One ``except RepositoryError`` catches every error the library raises."""
        assert issubclass(cls, RepositoryError)
        assert issubclass(cls, Exception)

    @pytest.mark.parametrize(
        "cls",
        [
            ConfigurationError,
            NotFoundError,
            MultipleResultsFoundError,
            InvalidFilterError,
            ConflictError,
            ConcurrencyError,
            InvalidValueError,
            StatementTimeoutError,
            TenantRequiredError,
            TenantMismatchError,
        ],
        ids=lambda cls: cls.__name__,
    )
    def test_direct_children(self, cls: type[RepositoryError]) -> None:
        """The documented classes derive from RepositoryError directly."""
        assert RepositoryError in cls.__bases__

    @pytest.mark.parametrize("cls", CONFLICTS, ids=_ids(CONFLICTS))  # type: ignore[arg-type]
    def test_conflict_subclasses(self, cls: type[ConflictError]) -> None:
        """Each kind of integrity violation is a ConflictError."""
        assert ConflictError in cls.__bases__

    def test_invalid_filter_is_value_error(self) -> None:
        """InvalidFilterError is also a ValueError, as bad input should be."""
        assert issubclass(InvalidFilterError, ValueError)
        message = "bad sort key"
        with pytest.raises(ValueError, match=message):
            raise InvalidFilterError(message, detail={"field": "x"})

    def test_naive_datetime_is_an_invalid_value(self) -> None:
        """NaiveDatetimeError is an InvalidValueError, so a ValueError and a RepositoryError."""
        assert NaiveDatetimeError.__bases__ == (InvalidValueError,)
        assert issubclass(NaiveDatetimeError, ValueError)
        error = NaiveDatetimeError("naive", detail={"reason": "naive_datetime"})
        assert error.code == "naive_datetime"
        assert error.detail == {"reason": "naive_datetime"}

    def test_naive_datetime_importable_from_types(self) -> None:
        """``sqla_repo.types.NaiveDatetimeError`` is the same class."""
        from sqla_repo import types  # noqa: PLC0415

        assert types.NaiveDatetimeError is NaiveDatetimeError

    def test_not_found_is_lookup_error(self) -> None:
        """NotFoundError is also a LookupError."""
        assert issubclass(NotFoundError, LookupError)

    @pytest.mark.parametrize(
        "cls",
        [
            ConflictError,
            ConcurrencyError,
            StatementTimeoutError,
            TenantRequiredError,
            TenantMismatchError,
        ],
        ids=lambda cls: cls.__name__,
    )
    def test_not_value_errors(self, cls: type[RepositoryError]) -> None:
        """Database and scoping errors are not mistaken for bad input."""
        assert not issubclass(cls, ValueError)
        assert not issubclass(cls, LookupError)


class TestCodes:
    def test_codes_are_unique(self) -> None:
        """Every class has its own code."""
        codes = [cls.code for cls in ALL]
        assert len(codes) == len(set(codes))

    @pytest.mark.parametrize("cls", ALL, ids=_ids(ALL))
    def test_code_defined_on_the_class(self, cls: type[RepositoryError]) -> None:
        """Each class sets its code itself, a short snake_case anchor name."""
        assert "code" in vars(cls)
        assert cls.code.replace("_", "").isalpha()
        assert cls.code == cls.code.lower()

    @pytest.mark.parametrize("cls", ALL, ids=_ids(ALL))
    def test_default_message(self, cls: type[RepositoryError]) -> None:
        """Each class has its own default message, used when none is given."""
        assert "default_message" in vars(cls)
        error = cls()
        assert str(error) == cls.default_message
        assert error.message == cls.default_message
        assert error.args == (cls.default_message,)


class TestDetail:
    @pytest.mark.parametrize("cls", ALL, ids=_ids(ALL))
    def test_detail_carries_model_name(self, cls: type[RepositoryError]) -> None:
        """``detail`` names the model, and ``model`` is the class itself."""
        error = cls(model=User)
        assert error.model is User
        assert error.detail == {"model": "User"}

    def test_no_model(self) -> None:
        """Without a model, ``detail`` is empty."""
        error = NotFoundError()
        assert error.model is None
        assert error.detail == {}

    def test_explicit_detail_kept_and_copied(self) -> None:
        """Given detail is copied, and an explicit ``model`` entry wins over the class name."""
        given = {"identity": 7, "model": "Account"}
        error = NotFoundError("gone", model=User, detail=given)
        assert error.detail == {"identity": 7, "model": "Account"}
        error.detail["extra"] = 1
        assert "extra" not in given

    def test_message(self) -> None:
        """A given message is the str() of the error; repr() shows class, message and detail."""
        error = InvalidFilterError("unknown field 'nme'", detail={"field": "nme"})
        assert str(error) == "unknown field 'nme'"
        assert repr(error) == (
            "InvalidFilterError(\"unknown field 'nme'\", detail={'field': 'nme'})"
        )

    def test_conflict_constraint_and_column(self) -> None:
        """ConflictError carries the constraint and column, also in ``detail``."""
        unique = UniqueViolationError(model=User, constraint="uq_users_email")
        assert unique.constraint == "uq_users_email"
        assert unique.column is None
        assert unique.detail == {"model": "User", "constraint": "uq_users_email"}
        not_null = NotNullViolationError(model=User, column="email")
        assert (not_null.constraint, not_null.column) == (None, "email")
        assert not_null.detail == {"model": "User", "column": "email"}

    @pytest.mark.parametrize("cls", ALL, ids=_ids(ALL))
    def test_pickle_round_trip(self, cls: type[RepositoryError]) -> None:
        """Errors survive pickling (multiprocessing, task queues) with their fields."""
        kwargs: dict[str, Any] = (
            {"constraint": "uq_x", "column": "x"} if issubclass(cls, ConflictError) else {}
        )
        error = cls("message", detail={"field": "x"}, **kwargs)
        copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
        assert type(copy) is cls
        assert str(copy) == "message"
        assert copy.detail == error.detail
        for name, value in kwargs.items():
            assert getattr(copy, name) == value
