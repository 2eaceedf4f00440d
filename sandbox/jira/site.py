"""The Jira sandbox's state: one site seeded from a data file, its issues, comments, properties and webhooks.

Rendering follows Jira Cloud's REST shapes: ``/rest/api/2`` bodies carry plain strings for rich text, ``/rest/api/3``
carries Atlassian Document Format (ADF). Timestamps are Jira's ``2026-11-28T17:53:16.123+0000``.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sandbox.jira import jql

SEED_PATH = Path(__file__).resolve().parents[1] / "data" / "jira_seed.json"
MAX_PROPERTY_CHARS = 32768
MAX_PROPERTY_KEY = 255
WEBHOOK_EVENTS = ("jira:issue_created", "jira:issue_updated", "jira:issue_deleted", "comment_created",
                  "comment_updated", "comment_deleted")


class JiraError(Exception):
    """An error answered with Jira's body: ``{"errorMessages": [...], "errors": {...}}``."""

    def __init__(self, status: int, messages: list[str] | None = None, errors: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(status, messages, errors)
        self.status = status
        self.messages = messages or []
        self.errors = errors or {}
        self.headers = headers or {}

    def body(self) -> dict:
        return {"errorMessages": self.messages, "errors": self.errors}


def now() -> datetime:
    return datetime.now(timezone.utc)


def jira_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def to_adf(text: str | None) -> dict | None:
    if text is None:
        return None
    paragraphs = [p for p in text.split("\n\n")] if text else [""]
    content = []
    for paragraph in paragraphs:
        parts = []
        for index, line in enumerate(paragraph.split("\n")):
            if index:
                parts.append({"type": "hardBreak"})
            if line:
                parts.append({"type": "text", "text": line})
        content.append({"type": "paragraph", "content": parts})
    return {"type": "doc", "version": 1, "content": content}


def adf_text(node: Any) -> str:
    """The plain text of an ADF document (what Jira shows a v2 client for a v3-written body)."""
    if not isinstance(node, dict):
        return ""
    if node.get("type") == "text":
        return str(node.get("text", ""))
    if node.get("type") == "hardBreak":
        return "\n"
    parts = [adf_text(child) for child in node.get("content") or []]
    joiner = "\n\n" if node.get("type") == "doc" else ""
    return joiner.join(parts)


def is_adf(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "doc" and isinstance(value.get("content"), list)


@dataclass
class User:
    account_id: str
    display_name: str
    email: str
    time_zone: str
    groups: list[str]
    api_user: bool = False
    email_visible: bool = True  # the profile's "who can see your email": Jira leaves a hidden one out
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        return "jira-administrators" in self.groups


@dataclass
class Comment:
    id: str
    author: str
    body: str | dict  # v2 string or v3 ADF, as written
    created: datetime
    updated: datetime
    visibility: dict | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class HistoryItem:
    field: str
    fieldtype: str
    field_id: str
    from_value: str | None
    from_string: str | None
    to_value: str | None
    to_string: str | None

    def render(self) -> dict:
        return {"field": self.field, "fieldtype": self.fieldtype, "fieldId": self.field_id,
                "from": self.from_value, "fromString": self.from_string, "to": self.to_value,
                "toString": self.to_string}


@dataclass
class History:
    id: str
    author: str
    created: datetime
    items: list[HistoryItem]


@dataclass
class Issue:
    id: str
    key: str
    issuetype_id: str
    status: str  # status name
    fields: dict[str, Any]  # summary, description, labels, reporter, custom fields (stored raw)
    created: datetime
    updated: datetime
    creator: str
    comments: list[Comment] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    history: list[History] = field(default_factory=list)
    site: Any = None

    def jql_value(self, name: str) -> Any:
        if name == "project":
            return self.key.split("-")[0]
        if name == "status":
            return self.status
        if name == "issuetype":
            return self.site.issue_types[self.issuetype_id]["name"]
        if name == "key":
            return self.key
        if name == "reporter":
            return self.fields.get("reporter")
        if name == "created":
            return self.created
        if name == "updated":
            return self.updated
        raise KeyError(name)


@dataclass(frozen=True)
class IssueLink:
    """A link of ``type_id``: the ``inward`` issue shows the other as its ``outwardIssue``, and the other way."""

    id: str
    type_id: str
    inward: str  # issue key
    outward: str  # issue key


def _by_id_or_name(types: dict[str, dict], spec: Any) -> dict | None:
    """The type ``spec`` names by ``id``, else by ``name`` (case-insensitive), as a request body names one."""
    if not isinstance(spec, dict):
        return None
    if "id" in spec:
        return types.get(str(spec["id"]))
    if "name" in spec:
        return next((t for t in types.values() if t["name"].lower() == str(spec["name"]).lower()), None)
    return None


class Site:
    """Everything one sandbox Jira site holds. Every public method takes the lock."""

    def __init__(self, base_url: str, api_email: str, seed_path: Path = SEED_PATH, first_issue_number: int = 1):
        self.base_url = base_url.rstrip("/")
        self.lock = threading.RLock()
        seed = json.loads(Path(seed_path).read_text())
        self.seed = seed
        self.server_title = seed.get("serverTitle", "Jira sandbox")
        self.users: dict[str, User] = {}
        for raw in seed["users"]:
            email = api_email if raw.get("apiUser") else raw["emailAddress"]
            self.users[raw["accountId"]] = User(raw["accountId"], raw["displayName"], email,
                                                raw.get("timeZone", "Etc/UTC"), list(raw.get("groups", [])),
                                                bool(raw.get("apiUser")),
                                                raw.get("emailVisibility", "anyone") != "private")
        self.api_user = next(u for u in self.users.values() if u.api_user)
        self.categories = {c["key"]: c for c in seed["statusCategories"]}
        self.statuses = {s["name"]: s for s in seed["statuses"]}
        self.custom_fields = {f["id"]: f for f in seed["fields"]}
        project = seed["project"]
        self.project = project
        self.issue_types = {t["id"]: t for t in project["issueTypes"]}
        self.issues: dict[str, Issue] = {}
        self._issue_ids = itertools.count(10001)
        self._issue_numbers = itertools.count(first_issue_number)
        self._comment_ids = itertools.count(10001)
        self._history_ids = itertools.count(10001)
        self.webhooks: dict[int, dict] = {}
        self._webhook_ids = itertools.count(1)
        self.link_types = {t["id"]: t for t in seed.get("issueLinkTypes", [])}
        self.links: dict[str, IssueLink] = {}
        self._link_ids = itertools.count(10001)

    # --- lookups ------------------------------------------------------------------------------------
    def issue(self, id_or_key: str) -> Issue:
        found = self.issues.get(id_or_key.upper()) or next(
            (i for i in self.issues.values() if i.id == id_or_key), None)
        if found is None:
            raise JiraError(404, ["Issue does not exist or you do not have permission to see it."])
        return found

    def user_by_email(self, email: str) -> User | None:
        return next((u for u in self.users.values() if u.email.lower() == email.lower()), None)

    def find_issue_type(self, spec: Any) -> dict | None:
        return _by_id_or_name(self.issue_types, spec)

    def find_link_type(self, spec: Any) -> dict | None:
        """A link type by ``id`` or ``name`` (case-insensitive), as an issue link names one."""
        return _by_id_or_name(self.link_types, spec)

    def add_link(self, link_type: dict, inward: Issue, outward: Issue) -> IssueLink:
        """Link two issues; the same link again is the link there already (Jira answers it as created)."""
        for link in self.links.values():
            if (link.type_id, link.inward, link.outward) == (link_type["id"], inward.key, outward.key):
                return link
        link = IssueLink(str(next(self._link_ids)), link_type["id"], inward.key, outward.key)
        self.links[link.id] = link
        return link

    def link(self, link_id: str) -> IssueLink:
        found = self.links.get(str(link_id))
        if found is None:
            raise JiraError(404, ["No issue link with id '%s' exists." % link_id])
        return found

    def transitions_from(self, issue: Issue) -> list[dict]:
        workflow = self.issue_types[issue.issuetype_id]["workflow"]
        return [t for t in workflow["transitions"] if issue.status in t["from"]]

    # --- jql catalog -------------------------------------------------------------------------------
    def project_keys(self) -> dict[str, str]:
        return {self.project["key"].upper(): self.project["key"], self.project["id"]: self.project["key"]}

    def status_names(self) -> dict[str, str]:
        names = {name.lower(): name for name in self.statuses}
        names.update({s["id"]: name for name, s in self.statuses.items()})
        return names

    def issuetype_names(self) -> dict[str, str]:
        names = {t["name"].lower(): t["name"] for t in self.issue_types.values()}
        names.update({t["id"]: t["name"] for t in self.issue_types.values()})
        return names

    def user_ids(self) -> dict[str, str]:
        ids = {}
        for user in self.users.values():
            for alias in (user.account_id, user.email, user.display_name):
                ids[alias.lower()] = user.account_id
        return ids

    def issue_exists(self, key: str) -> bool:
        return key.upper() in self.issues

    def search(self, text: str | None, strict: bool = True) -> tuple[list[Issue], list[str]]:
        query = jql.compile_jql(text, self, strict)
        matching = [issue for issue in self.issues.values() if query.predicate(issue)]

        def value_of(issue: Issue, name: str):
            if name == "key":
                return (issue.key.split("-")[0], int(issue.key.split("-")[1]))
            return issue.jql_value(name)

        return query.sort(matching, value_of), query.warnings

    def matches(self, issue: Issue, text: str | None) -> bool:
        if not text:
            return True
        return jql.compile_jql(text, self, strict=False).predicate(issue)

    # --- rendering ---------------------------------------------------------------------------------
    def user_json(self, account_id: str | None, for_webhook: bool = False) -> dict | None:
        """A user as Jira Cloud shows one: no email when their profile hides it, none ever in a webhook's
        ``user``."""
        user = self.users.get(account_id or "")
        if user is None:
            return None
        body = {
            "self": f"{self.base_url}/rest/api/2/user?accountId={user.account_id}",
            "accountId": user.account_id,
            "avatarUrls": {size: f"{self.base_url}/secure/useravatar?size={size}&ownerId={user.account_id}"
                           for size in ("48x48", "24x24", "16x16", "32x32")},
            "displayName": user.display_name,
            "active": True,
            "timeZone": user.time_zone,
            "accountType": "atlassian",
        }
        if user.email_visible and not for_webhook:
            body["emailAddress"] = user.email
        return body

    def myself_json(self, user: User) -> dict:
        """The caller, who always sees their own email."""
        body = self.user_json(user.account_id)
        body["emailAddress"] = user.email
        body["locale"] = "en_US"
        body["groups"] = {"size": len(user.groups), "items": []}
        body["applicationRoles"] = {"size": 1, "items": []}
        body["expand"] = "groups,applicationRoles"
        return body

    def status_json(self, name: str) -> dict:
        status = self.statuses[name]
        category = self.categories[status["category"]]
        return {
            "self": f"{self.base_url}/rest/api/2/status/{status['id']}",
            "description": status.get("description", ""),
            "iconUrl": f"{self.base_url}/images/icons/statuses/generic.png",
            "name": name,
            "id": status["id"],
            "statusCategory": {
                "self": f"{self.base_url}/rest/api/2/statuscategory/{category['id']}",
                "id": category["id"], "key": category["key"], "colorName": category["colorName"],
                "name": category["name"],
            },
        }

    def issuetype_json(self, issuetype_id: str) -> dict:
        issue_type = self.issue_types[issuetype_id]
        return {
            "self": f"{self.base_url}/rest/api/2/issuetype/{issuetype_id}",
            "id": issuetype_id,
            "description": issue_type.get("description", ""),
            "iconUrl": f"{self.base_url}/rest/api/2/universal_avatar/view/type/issuetype/avatar/10300",
            "name": issue_type["name"],
            "subtask": False,
            "avatarId": 10300,
            "hierarchyLevel": 0,
        }

    def project_ref_json(self) -> dict:
        return {
            "self": f"{self.base_url}/rest/api/2/project/{self.project['id']}",
            "id": self.project["id"], "key": self.project["key"], "name": self.project["name"],
            "projectTypeKey": "software", "simplified": False,
            "avatarUrls": {size: f"{self.base_url}/rest/api/2/universal_avatar/view/type/project/avatar/10400"
                           for size in ("48x48", "24x24", "16x16", "32x32")},
        }

    def project_json(self) -> dict:
        body = self.project_ref_json()
        body.update({
            "expand": "description,lead,issueTypes,url,projectKeys,permissions,insight",
            "description": self.project.get("description", ""),
            "lead": self.user_json(self.project["lead"]),
            "components": [],
            "issueTypes": [self.issuetype_json(t) for t in self.issue_types],
            "assigneeType": "UNASSIGNED",
            "versions": [],
            "roles": {},
            "isPrivate": False,
            "properties": {},
        })
        return body

    def option_json(self, field_id: str, option: dict) -> dict:
        return {"self": f"{self.base_url}/rest/api/2/customFieldOption/{option['id']}", "value": option["value"],
                "id": option["id"]}

    def custom_value_json(self, field_id: str, raw: Any) -> Any:
        if raw is None:
            return None
        definition = self.custom_fields[field_id]
        if definition["type"] == "option":
            option = next(o for o in definition["options"] if o["id"] == raw)
            return self.option_json(field_id, option)
        if definition["type"] == "user":
            return self.user_json(raw)
        return raw

    def comment_json(self, issue: Issue, comment: Comment, version: int) -> dict:
        body = comment.body
        if version == 3 and not is_adf(body):
            body = to_adf(body)
        elif version == 2 and is_adf(body):
            body = adf_text(body)
        rendered = {
            "self": f"{self.base_url}/rest/api/{version}/issue/{issue.id}/comment/{comment.id}",
            "id": comment.id,
            "author": self.user_json(comment.author),
            "body": body,
            "updateAuthor": self.user_json(comment.author),
            "created": jira_time(comment.created),
            "updated": jira_time(comment.updated),
            "jsdPublic": True,
        }
        if comment.visibility:
            rendered["visibility"] = comment.visibility
        return rendered

    def all_field_ids(self) -> list[str]:
        return ["summary", "description", "issuetype", "project", "status", "reporter", "creator", "assignee",
                "created", "updated", "statuscategorychangedate", "labels", "priority", "resolution",
                "resolutiondate", "comment", "issuelinks", *self.custom_fields]

    def issue_fields_json(self, issue: Issue, version: int, wanted: set[str] | None) -> dict:
        description = issue.fields.get("description")
        if version == 3 and isinstance(description, str):
            description = to_adf(description)
        elif version == 2 and is_adf(description):
            description = adf_text(description)
        last_status_change = next((h.created for h in reversed(issue.history)
                                   if any(i.field == "status" for i in h.items)), issue.created)
        values = {
            "summary": issue.fields.get("summary"),
            "description": description,
            "issuetype": self.issuetype_json(issue.issuetype_id),
            "project": self.project_ref_json(),
            "status": self.status_json(issue.status),
            "reporter": self.user_json(issue.fields.get("reporter")),
            "creator": self.user_json(issue.creator),
            "assignee": None,
            "created": jira_time(issue.created),
            "updated": jira_time(issue.updated),
            "statuscategorychangedate": jira_time(last_status_change),
            "labels": list(issue.fields.get("labels") or []),
            "priority": self.priority_json(),
            "resolution": None,
            "resolutiondate": None,
            "comment": {
                "comments": [self.comment_json(issue, c, version) for c in issue.comments],
                "self": f"{self.base_url}/rest/api/{version}/issue/{issue.id}/comment",
                "maxResults": len(issue.comments), "total": len(issue.comments), "startAt": 0,
            },
            "issuelinks": [self.issue_link_json(link, issue.key) for link in self.links.values()
                           if issue.key in (link.inward, link.outward)],
        }
        for field_id in self.custom_fields:
            values[field_id] = self.custom_value_json(field_id, issue.fields.get(field_id))
        if wanted is None:
            return values
        return {name: values[name] for name in values if name in wanted}

    def wanted_fields(self, spec: str | list[str] | None, default: str) -> set[str] | None:
        """Jira's ``fields`` parameter: ``*all``, ``*navigable``, names and ``-name`` exclusions."""
        if isinstance(spec, list):
            spec = ",".join(spec)
        tokens = [t.strip() for t in (spec if spec not in (None, "") else default).split(",") if t.strip()]
        wanted: set[str] = set()
        for token in tokens:
            if token == "*all":
                wanted |= set(self.all_field_ids())
            elif token == "*navigable":
                wanted |= set(self.all_field_ids()) - {"comment"}
            elif not token.startswith("-"):
                wanted.add(token)
        for token in tokens:
            if token.startswith("-"):
                wanted.discard(token[1:])
        return wanted

    def issue_json(self, issue: Issue, version: int, wanted: set[str] | None = None, expand: str = "",
                   properties: list[str] | None = None) -> dict:
        body = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": issue.id,
            "self": f"{self.base_url}/rest/api/{version}/issue/{issue.id}",
            "key": issue.key,
        }
        fields = self.issue_fields_json(issue, version, wanted)
        body["fields"] = fields
        expands = {e.strip() for e in (expand or "").split(",") if e.strip()}
        if "names" in expands:
            body["names"] = {fid: self.field_name(fid) for fid in fields}
        if "transitions" in expands:
            body["transitions"] = [self.transition_json(t) for t in self.transitions_from(issue)]
        if "changelog" in expands:
            histories = [self.history_json(h) for h in reversed(issue.history)]
            body["changelog"] = {"startAt": 0, "maxResults": len(histories), "total": len(histories),
                                 "histories": histories}
        if properties:
            keys = issue.properties if "*all" in properties else properties
            body["properties"] = {k: issue.properties[k] for k in keys if k in issue.properties}
        return body

    def priority_json(self) -> dict:
        return {"self": f"{self.base_url}/rest/api/2/priority/3", "iconUrl":
                f"{self.base_url}/images/icons/priorities/medium.svg", "name": "Medium", "id": "3"}

    def link_type_json(self, type_id: str) -> dict:
        link_type = self.link_types[type_id]
        return {"id": type_id, "name": link_type["name"], "inward": link_type["inward"],
                "outward": link_type["outward"], "self": f"{self.base_url}/rest/api/2/issueLinkType/{type_id}"}

    def linked_issue_json(self, key: str) -> dict:
        """The other end of a link, with the few fields Jira shows of it."""
        issue = self.issues[key]
        return {"id": issue.id, "key": issue.key, "self": f"{self.base_url}/rest/api/2/issue/{issue.id}",
                "fields": {"summary": issue.fields.get("summary") or "", "status": self.status_json(issue.status),
                           "priority": self.priority_json(),
                           "issuetype": self.issuetype_json(issue.issuetype_id)}}

    def issue_link_json(self, link: IssueLink, seen_from: str | None = None) -> dict:
        """A link as ``GET issueLink`` shows it (both ends), or as an issue's ``issuelinks`` entry seen from
        ``seen_from`` (only the other end)."""
        body: dict[str, Any] = {"id": link.id, "self": f"{self.base_url}/rest/api/2/issueLink/{link.id}",
                                "type": self.link_type_json(link.type_id)}
        if seen_from != link.outward:
            body["outwardIssue"] = self.linked_issue_json(link.outward)
        if seen_from != link.inward:
            body["inwardIssue"] = self.linked_issue_json(link.inward)
        return body

    def history_json(self, history: History) -> dict:
        """A changelog history for REST (``expand=changelog``): the document types ``from``/``to`` as non-null
        strings, so absent values are left out here; webhook changelogs keep Jira's nulls."""
        return {"id": history.id, "author": self.user_json(history.author), "created": jira_time(history.created),
                "items": [{k: v for k, v in item.render().items() if v is not None} for item in history.items]}

    def transition_json(self, transition: dict, with_fields: bool = False) -> dict:
        body = {
            "id": transition["id"], "name": transition["name"], "to": self.status_json(transition["to"]),
            "hasScreen": False, "isGlobal": False, "isInitial": False, "isAvailable": True,
            "isConditional": False, "isLooped": False,
        }
        if with_fields:
            body["fields"] = {}
        return body

    def field_name(self, field_id: str) -> str:
        if field_id in self.custom_fields:
            return self.custom_fields[field_id]["name"]
        return {"issuetype": "Issue Type", "statuscategorychangedate": "Status Category Changed",
                "resolutiondate": "Resolved", "issuelinks": "Linked Issues"}.get(field_id, field_id.capitalize())

    def field_list_json(self) -> list[dict]:
        system = {
            "summary": ("string", ["summary"]), "description": ("string", ["description"]),
            "issuetype": ("issuetype", ["issuetype", "type"]), "project": ("project", ["project"]),
            "status": ("status", ["status"]), "reporter": ("user", ["reporter"]),
            "creator": ("user", ["creator"]), "assignee": ("user", ["assignee"]),
            "created": ("datetime", ["created", "createdDate"]), "updated": ("datetime", ["updated", "updatedDate"]),
            "labels": ("array", ["labels"]), "priority": ("priority", ["priority"]),
            "resolution": ("resolution", ["resolution"]), "comment": ("comments-page", ["comment"]),
            "issuelinks": ("array", ["issuelinks"]),
            "issuekey": (None, ["id", "issue", "issuekey", "key"]),
        }
        fields = []
        for field_id, (kind, clauses) in system.items():
            entry = {"id": field_id, "key": field_id, "name": self.field_name(field_id) if field_id != "issuekey"
                     else "Key", "custom": False, "orderable": field_id not in ("issuekey", "status", "created",
                                                                                 "updated", "creator"),
                     "navigable": True, "searchable": True, "clauseNames": clauses}
            if kind:
                entry["schema"] = {"type": kind, "system": field_id}
                if kind == "array":
                    entry["schema"]["items"] = "issuelinks" if field_id == "issuelinks" else "string"
            fields.append(entry)
        for field_id, definition in self.custom_fields.items():
            number = field_id.split("_")[1]
            fields.append({
                "id": field_id, "key": field_id, "name": definition["name"],
                "custom": True, "orderable": True, "navigable": True, "searchable": True,
                "clauseNames": [f"cf[{number}]", definition["name"]],
                "schema": {"type": definition["type"], "custom": definition["custom"], "customId": int(number)},
            })
        return fields

    def field_meta_json(self, field_id: str, issue_type: dict) -> dict:
        required = field_id in issue_type.get("required", [])
        if field_id in self.custom_fields:
            definition = self.custom_fields[field_id]
            meta = {"required": required, "name": definition["name"], "key": field_id, "hasDefaultValue": False,
                    "operations": ["set"],
                    "schema": {"type": definition["type"], "custom": definition["custom"],
                               "customId": int(field_id.split("_")[1])}}
            if definition["type"] == "option":
                meta["allowedValues"] = [self.option_json(field_id, o) for o in definition["options"]]
            return meta
        if field_id == "issuelinks":
            return {"required": required, "name": self.field_name(field_id), "key": field_id,
                    "hasDefaultValue": False, "operations": ["add"],
                    "schema": {"type": "array", "items": "issuelinks", "system": field_id}}
        kinds = {"summary": "string", "description": "string", "reporter": "user", "labels": "array"}
        meta = {"required": required, "name": self.field_name(field_id), "key": field_id, "hasDefaultValue": False,
                "operations": ["set", "add", "remove"] if field_id == "labels" else ["set"],
                "schema": {"type": kinds[field_id], "system": field_id}}
        if field_id == "labels":
            meta["schema"]["items"] = "string"
        return meta

    def createmeta_json(self, expand_fields: bool, type_filter: set[str] | None) -> dict:
        issue_types = []
        for type_id, issue_type in self.issue_types.items():
            if type_filter and type_id not in type_filter and issue_type["name"].lower() not in type_filter:
                continue
            entry = self.issuetype_json(type_id)
            entry.pop("avatarId")
            entry.pop("hierarchyLevel")
            entry["expand"] = "fields"
            if expand_fields:
                entry["fields"] = {f: self.field_meta_json(f, issue_type)
                                   for f in ["project", "issuetype", *issue_type["fields"]]
                                   if f not in ("project", "issuetype")}
                entry["fields"]["project"] = {"required": True, "name": "Project", "key": "project",
                                              "hasDefaultValue": False, "operations": ["set"],
                                              "schema": {"type": "project", "system": "project"}}
                entry["fields"]["issuetype"] = {"required": True, "name": "Issue Type", "key": "issuetype",
                                                "hasDefaultValue": False, "operations": [],
                                                "schema": {"type": "issuetype", "system": "issuetype"}}
            issue_types.append(entry)
        project = self.project_ref_json()
        project.pop("projectTypeKey")
        project.pop("simplified")
        project["issuetypes"] = issue_types
        return {"expand": "projects", "projects": [project]}

    def webhook_json(self, webhook: dict) -> dict:
        user = self.users[webhook["lastUpdatedUser"]]
        return {
            "self": f"{self.base_url}/rest/webhooks/1.0/webhook/{webhook['id']}",
            "name": webhook["name"], "url": webhook["url"], "events": list(webhook["events"]),
            "filters": {"issue-related-events-section": webhook["jql"] or ""},
            "excludeBody": webhook["excludeBody"], "enabled": webhook["enabled"],
            "lastUpdatedUser": user.account_id, "lastUpdatedDisplayName": user.display_name,
            "lastUpdated": webhook["lastUpdated"],
        }

    # --- writes -------------------------------------------------------------------------------------
    def next_issue(self, issue_type: dict, fields: dict, creator: User) -> Issue:
        moment = now()
        number = next(self._issue_numbers)
        issue = Issue(id=str(next(self._issue_ids)), key=f"{self.project['key']}-{number}",
                      issuetype_id=issue_type["id"], status=issue_type["workflow"]["initial"], fields=fields,
                      created=moment, updated=moment, creator=creator.account_id, site=self)
        self.issues[issue.key] = issue
        return issue

    def next_comment_id(self) -> str:
        return str(next(self._comment_ids))

    def add_history(self, issue: Issue, author: User, items: list[HistoryItem]) -> History:
        history = History(str(next(self._history_ids)), author.account_id, now(), items)
        issue.history.append(history)
        issue.updated = history.created
        return history

    def add_webhook(self, spec: dict, user: User) -> dict:
        webhook = dict(spec, id=next(self._webhook_ids), lastUpdatedUser=user.account_id,
                       lastUpdated=int(now().timestamp() * 1000))
        self.webhooks[webhook["id"]] = webhook
        return webhook
