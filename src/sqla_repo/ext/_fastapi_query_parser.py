"""The query-string parser behind ``search_params`` and ``cursor_params``.

It checks sort and filter parameters against a repository's whitelists, maps public
aliases to whitelisted names, documents the parameters for OpenAPI, and reports every
problem at once as a [`QueryValidationError`][sqla_repo.ext.fastapi.QueryValidationError].
"""

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from fastapi import Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from sqla_repo._filter_limits import echo
from sqla_repo._sql import resolve
from sqla_repo._whitelist import (
    ALIASES,
    OPERATORS,
    filter_whitelist,
    sort_whitelist,
    unorderable,
)
from sqla_repo.exceptions import ConfigurationError, InvalidFilterError
from sqla_repo.filters import MAX_CONDITIONS, SortKey, compile_filters, compile_order_by
from sqla_repo.pagination import cursor_spec, decode_cursor
from sqla_repo.repository import BaseRepository

__all__ = ["QueryParser", "QueryValidationError"]

_LIST_OPERATORS = frozenset({"in", "not_in", "between"})
_PUBLIC_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
_FILTERS = "filters"  # the name under which the filters are documented in OpenAPI
# Query parameter names by route dependant; the entry holds the dependant, so its id
# cannot be reused while it is cached.
_route_params: dict[int, tuple[Any, frozenset[str]]] = {}


class QueryValidationError(RequestValidationError):
    """The 422 of ``search_params`` and ``cursor_params``: bad sort or filter parameters.

    It is FastAPI's own validation error, so FastAPI answers it as usual, with one entry
    per offending parameter; ``install_exception_handlers(app, body=...)`` answers it in
    the application's own format, through ``as_repository_error()``.
    """

    def as_repository_error(self) -> InvalidFilterError:
        """Return the problems as one ``InvalidFilterError``.

        Its message is the first problem's message, prefixed by its parameter
        (``"tag__like: The like operator is not allowed on 'tag'."``); its ``detail``
        holds ``reason`` (``"invalid_query"``) and ``errors``, every problem as
        ``{"param", "type", "msg"}``, without the values sent.
        """
        errors = [
            {"param": _param(entry), "type": entry.get("type"), "msg": entry.get("msg")}
            for entry in self.errors()
        ]
        first = errors[0] if errors else {"param": None, "msg": "The query string is invalid."}
        message = f"{first['param']}: {first['msg']}" if first["param"] else str(first["msg"])
        return InvalidFilterError(message, detail={"reason": "invalid_query", "errors": errors})


def _param(entry: Mapping[str, Any]) -> str | None:
    loc: Sequence[Any] = entry.get("loc") or ()
    return str(loc[1]) if len(loc) > 1 else None


def _problem(param: str, kind: str, msg: str, value: object) -> dict[str, Any]:
    """One entry of a 422 response, in FastAPI's own format."""
    return {"type": kind, "loc": ("query", param), "msg": msg, "input": value}


def _rejected(param: str, exc: InvalidFilterError, value: object) -> dict[str, Any]:
    return _problem(param, exc.detail.get("reason") or exc.code, exc.message, value)


def _route_query_names(request: Request) -> frozenset[str]:
    """Return the query parameters the matched route declares (its own and its dependencies')."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return frozenset()
    cached = _route_params.get(id(dependant))
    if cached is not None and cached[0] is dependant:
        return cached[1]
    names: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        for param in getattr(current, "query_params", ()):
            names.add(param.alias)
            annotation = getattr(param.field_info, "annotation", None)
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                names.update(f.alias or n for n, f in annotation.model_fields.items())
        pending.extend(getattr(current, "dependencies", ()))
    result = frozenset(names)
    _route_params[id(dependant)] = (dependant, result)
    return result


def _operator_names(ops: frozenset[str]) -> list[str]:
    """The operators in the documentation's order: canonical names, each with its aliases."""
    names: list[str] = []
    for op in sorted(ops):
        names.append(op)
        names.extend(sorted(alias for alias, target in ALIASES.items() if target == op))
    return names


def _public_names(whitelisted: Collection[str], aliases: Mapping[str, str]) -> dict[str, str]:
    """Public name -> whitelisted name: aliases, and the whitelisted names no alias hides."""
    targets = set(aliases.values())
    names = {name: name for name in whitelisted if name not in targets}
    names.update({public: target for public, target in aliases.items() if target in whitelisted})
    return names


class QueryParser:
    """Reads sort and filter parameters for one repository and reports every problem."""

    def __init__(
        self,
        repository: type[BaseRepository[Any]],
        reserved: Collection[str],
        factory: str,
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        self.repository = repository
        self.model: type[Any] = repository.model
        filterable, sortable = repository.filterable_fields, repository.sortable_fields
        name = repository.__name__
        if filterable is None and sortable is None:
            msg = (
                f"{factory}({name}): {name}.filterable_fields and {name}.sortable_fields are "
                "not set, so the query string could neither filter nor sort: list the fields "
                "clients may use in each, or set them to ALL_COLUMNS."
            )
            raise ConfigurationError(msg, model=self.model)
        # An unset channel accepts nothing: its parameters are refused like unknown fields.
        self.filter_whitelist = filter_whitelist(
            self.model, filterable or (), setting=f"{name}.filterable_fields"
        )
        self.sort_whitelist = sort_whitelist(
            self.model, sortable or (), setting=f"{name}.sortable_fields"
        )
        self.allowed_filters: Mapping[str, frozenset[str]] = self.filter_whitelist.fields
        self.allowed_sorts = tuple(self.sort_whitelist.fields)
        for field_name in {*self.allowed_filters, *self.allowed_sorts}:
            resolve(self.model, field_name)  # a misspelt whitelist fails now, not per request
        for field_name in self.allowed_sorts:
            target = resolve(self.model, field_name)
            if target.path or unorderable(target.expression.type):
                # Refused by every request otherwise, as a 500 any client can provoke.
                msg = (
                    f"{factory}({name}): {name}.sortable_fields names {field_name!r}, which "
                    "cannot be sorted on (a relationship path or a JSON column)."
                )
                raise ConfigurationError(msg, model=self.model)
        self.reserved = frozenset(reserved)
        # Public name -> whitelisted name, per channel; an aliased name is public no more.
        self._check_aliases(aliases or {}, factory)
        self.filter_names = _public_names(self.allowed_filters, aliases or {})
        self.sort_names = _public_names(self.allowed_sorts, aliases or {})
        self.filterable = sorted(self.filter_names)
        self.sortable = sorted(self.sort_names)

    def _check_aliases(self, aliases: object, factory: str) -> None:
        where = f"{factory}({self.repository.__name__}, aliases=...)"
        if not isinstance(aliases, Mapping):
            msg = f"{where}: aliases must map public names to whitelisted field names."
            raise ConfigurationError(msg, model=self.model)
        whitelisted = {*self.allowed_filters, *self.allowed_sorts}
        targets = set(aliases.values())
        for public, target in aliases.items():
            if not isinstance(public, str) or not _PUBLIC_NAME.match(public) or "__" in public:
                msg = (
                    f"{where}: {public!r} cannot be a query parameter name: use letters, "
                    "digits, '_', '.' or '-', without '__' (it separates the operator)."
                )
                raise ConfigurationError(msg, model=self.model)
            if public in self.reserved:
                msg = f"{where}: {public!r} is already a query parameter of its own."
                raise ConfigurationError(msg, model=self.model)
            if not isinstance(target, str) or target not in whitelisted:
                msg = (
                    f"{where}: {public!r} stands for {target!r}, which is in neither "
                    f"{self.repository.__name__}.filterable_fields nor .sortable_fields."
                )
                raise ConfigurationError(msg, model=self.model)
            if public != target and public in whitelisted and public not in targets:
                msg = (
                    f"{where}: {public!r} is a whitelisted field of its own; an alias "
                    "cannot hide it."
                )
                raise ConfigurationError(msg, model=self.model)

    def _sort_fields(self, parts: tuple[str, ...], errors: list[dict[str, Any]]) -> tuple[str, ...]:
        """Map the public sort names of *parts* to whitelisted ones, reporting hidden names."""
        result: list[str] = []
        seen: set[str] = set()
        for part in parts:
            sign = part[:1] if part[:1] in {"-", "+"} else ""
            name = part[len(sign) :]
            target = self.sort_names.get(name)
            if target is None and name in self.allowed_sorts:
                # Whitelisted, but published under an alias only: unknown to the client.
                msg = f"Cannot sort on {echo(name)!r}."
                errors.append(_problem("sort", "not_sortable", msg, ",".join(parts)))
                return ()
            if target is not None and target in seen:
                msg = f"The sort field {echo(name)!r} is given twice."
                errors.append(_problem("sort", "duplicate_sort_field", msg, ",".join(parts)))
                return ()
            if target is not None:
                seen.add(target)
            result.append(sign + (target or name))
        return tuple(result)

    def _filter_key(self, key: str) -> tuple[str, str, str | None]:
        """Return the public field, the whitelisted key and the operator given, of *key*."""
        names = self.filter_names
        field_name, op = key, None
        head, sep, tail = key.rpartition("__")
        if sep and key not in names and (head in names or ALIASES.get(tail, tail) in OPERATORS):
            field_name, op = head, tail
        target = names.get(field_name)
        if target is None:
            return field_name, key, op
        return field_name, target if op is None else f"{target}__{op}", op

    def sort_query(self) -> Any:
        return Query(
            description=(
                "Comma-separated fields to sort by, each optionally prefixed by `-` for "
                "descending order. Fields: "
                f"{', '.join(self.sortable) or 'none (sorting is not available)'}."
            ),
            examples=[f"-{self.sortable[0]}"] if self.sortable else None,
        )

    def _field_operators(self) -> list[tuple[str, list[str]]]:
        return [
            (name, _operator_names(self.filter_whitelist.operators(self.filter_names[name])))
            for name in self.filterable
        ]

    def filters_query(self) -> Any:
        keys: dict[str, Any] = {"maxProperties": 0}  # nothing is filterable
        every = _operator_names(OPERATORS)
        per_field = self._field_operators()
        if per_field:
            # Fields sharing one operator list share one alternative; a field without
            # operator means eq, so the bare name is valid where eq is.
            groups: dict[tuple[str, ...], list[str]] = {}
            for name, ops in per_field:
                groups.setdefault(tuple(ops), []).append(re.escape(name))
            alternatives = [
                f"(?:{'|'.join(names)})(?:__(?:{'|'.join(ops)})){'?' if 'eq' in ops else ''}"
                for ops, names in groups.items()
            ]
            keys = {"propertyNames": {"pattern": f"^(?:{'|'.join(alternatives)})$"}}
        if not per_field:
            fields_text = "Fields: none (filtering is not available). "
        elif all(ops == every for _, ops in per_field):
            fields_text = f"Fields: {', '.join(self.filterable)}. Operators: {', '.join(every)}. "
        else:
            listed = "; ".join(f"{name}: {', '.join(ops)}" for name, ops in per_field)
            fields_text = f"Fields and their operators: {listed}. "
        return Query(
            description=(
                "Filters, one query parameter each: `field=value` or "
                "`field__operator=value`, all of which must hold "
                "(`field=value` means `field__eq=value`). "
                f"{fields_text}"
                "`in`, `not_in` and `between` take comma-separated values, or the "
                "parameter repeated once per value; `is_null` takes true or false. "
                "An unknown field, an operator the field does not allow, or an unknown "
                "parameter is an error."
            ),
            json_schema_extra={
                "type": "object",
                **keys,
                "additionalProperties": {"type": "string"},
            },
        )

    def parse(
        self, request: Request, sort: str | None, cursors: Mapping[str, str | None]
    ) -> tuple[tuple[str, ...], dict[str, str | list[str]]]:
        """Return the sort fields and filters, or raise one 422 listing every problem."""
        errors: list[dict[str, Any]] = []
        order_by: tuple[str, ...] = ()
        keys: list[SortKey] | None = None
        if sort is not None and sort.strip():
            order_by = self._sort_fields(tuple(part.strip() for part in sort.split(",")), errors)
        try:
            if not errors:
                keys = compile_order_by(
                    self.model,
                    list(order_by) or None,
                    allowed=self.allowed_sorts,
                    default=self.repository.default_order_by,
                )
        except InvalidFilterError as exc:
            errors.append(_rejected("sort", exc, sort))
        filters = self._filters(request, errors)
        given = {name: text for name, text in cursors.items() if text is not None}
        if len(given) > 1:
            last = list(given)[-1]
            msg = "Give either " + " or ".join(given) + ", not both."
            errors.append(_problem(last, "both_cursors", msg, given[last]))
        elif given and keys is not None:
            ((name, cursor),) = given.items()
            try:
                decode_cursor(cursor, spec=cursor_spec(self.model, keys))
            except InvalidFilterError as exc:
                errors.append(_rejected(name, exc, cursor))
        if errors:
            raise QueryValidationError(errors)
        return order_by, filters

    def _filters(self, request: Request, errors: list[dict[str, Any]]) -> dict[str, Any]:
        ignored = (self.reserved | _route_query_names(request)) - {_FILTERS}
        grouped: dict[str, list[str]] = {}
        for key, text in request.query_params.multi_items():
            if key not in ignored:
                grouped.setdefault(key, []).append(text)
        if len(grouped) > MAX_CONDITIONS:
            msg = f"At most {MAX_CONDITIONS} filter parameters are accepted."
            errors.append({"type": "too_many_conditions", "loc": ("query",), "msg": msg})
            return {}
        filters: dict[str, Any] = {}
        for key, values in grouped.items():
            value: str | list[str] = values if len(values) > 1 else values[0]
            if len(values) > 1 and key.rpartition("__")[2] not in _LIST_OPERATORS:
                msg = "This parameter may be given once only."
                errors.append(_problem(key, "repeated_parameter", msg, values))
                continue
            internal = key
            if self.filter_names.keys() != self.allowed_filters.keys():  # aliases in play
                problem, internal = self._aliased(key)
                if problem is not None:
                    errors.append(_problem(key, problem[0], problem[1], value))
                    continue
            try:
                compile_filters(
                    self.model,
                    {internal: value},
                    allowed=self.allowed_filters,
                    max_in=self.repository.max_in_values,
                )
            except InvalidFilterError as exc:
                error = _rejected(key, exc, value)
                if key == _FILTERS:  # a client misreading the OpenAPI object parameter
                    error["msg"] = "Give each filter as its own query parameter: field__op=value."
                errors.append(error)
                continue
            filters[internal] = value
        return filters

    def _aliased(self, key: str) -> tuple[tuple[str, str] | None, str]:
        """Map *key* through the aliases; a problem names the client's field, never the target."""
        public, internal, op = self._filter_key(key)
        if public not in self.filter_names:
            if public in self.allowed_filters:  # published under an alias only
                return ("unknown_field", f"Unknown filter field {echo(public)!r}."), key
            head, sep, _ = key.rpartition("__")
            if sep and head in self.allowed_filters and head not in self.filter_names:
                # A hidden name with an unknown operator: answered as an unknown field,
                # exactly as a name that does not exist, never as an unknown operator.
                return ("unknown_field", f"Unknown filter field {echo(key)!r}."), key
            return None, key  # compile_filters reports it, in the client's own words
        canonical = ALIASES.get(op or "eq", op or "eq")
        target = self.filter_names[public]
        if canonical in OPERATORS and canonical not in self.allowed_filters[target]:
            msg = f"The {canonical} operator is not allowed on {echo(public)!r}."
            return ("operator_not_allowed", msg), key
        return None, internal
