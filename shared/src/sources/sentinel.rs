//! Microsoft Sentinel (spec `sources.md` §2).
//!
//! Shapes, checked in order: A. Logic Apps incident-trigger envelope (`object.properties`),
//! D. alert object in the Azure REST shape (`kind: "SecurityAlert"` with `properties`),
//! B. bare incident (`properties`), C. `SecurityAlert` row (`SystemAlertId` or `AlertName`).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::lookup::get_ci;
use super::{
    clean_description, clean_link, clean_tags, clean_title, decode_json_string, non_empty_str, rule_ref, scalar_string,
    string_list, AlertDraft, AlertSource, HostSet, ParseContext, ParseError, ParsedItem, SourceName,
};
use crate::domain::indicator::{IndicatorSet, IndicatorType};
use crate::domain::severity::Severity;
use crate::domain::timestamp;

/// Entities are not followed deeper than this.
pub(crate) const MAX_ENTITY_DEPTH: usize = 16;
/// At most this many entities are read per alert.
pub(crate) const MAX_ENTITIES: usize = 500;
/// Depth limit of the `$id` collection walk (guards the stack on hostile input).
const MAX_ID_WALK_DEPTH: usize = 64;

pub(crate) const UNTITLED_INCIDENT: &str = "Untitled Sentinel Incident";
pub(crate) const UNTITLED_ALERT: &str = "Untitled Sentinel Alert";

/// The Sentinel source.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sentinel;

impl AlertSource for Sentinel {
    fn name(&self) -> SourceName {
        SourceName::Sentinel
    }

    fn parse(&self, body: &Value, ctx: &ParseContext) -> Result<Vec<ParsedItem>, ParseError> {
        let Some(obj) = body.as_object() else {
            return Err(shape_error());
        };
        if let Some(incident) = obj
            .get("object")
            .filter(|o| o.get("properties").is_some_and(Value::is_object))
        {
            return parse_incident(body, incident, true, ctx);
        }
        if let Some(p) = obj
            .get("properties")
            .and_then(Value::as_object)
            .filter(|p| is_rest_alert(obj, p))
        {
            return Ok(vec![parse_rest_alert(body, p, ctx)]);
        }
        if obj.get("properties").is_some_and(Value::is_object) {
            return parse_incident(body, body, false, ctx);
        }
        if obj.contains_key("SystemAlertId") || obj.contains_key("AlertName") {
            return Ok(vec![parse_security_alert(body, obj, ctx)]);
        }
        Err(shape_error())
    }
}

fn shape_error() -> ParseError {
    ParseError::invalid(
        "$",
        "unrecognised Sentinel payload: expected a Logic Apps incident envelope (object.properties), \
         an incident (properties), an alert (kind SecurityAlert with properties) or a SecurityAlert row \
         (SystemAlertId or AlertName)",
    )
}

/// Severity table of §2.3.
pub(crate) fn map_severity(s: Option<&str>) -> Severity {
    match s.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("high") => Severity::High,
        Some("medium") => Severity::Medium,
        Some("low") => Severity::Low,
        Some("informational") | Some("none") => Severity::Informational,
        _ => Severity::Pending,
    }
}

/// Last `/` segment of an ARM id (or the id itself).
fn last_segment(s: &str) -> Option<String> {
    let seg = s.trim().trim_end_matches('/').rsplit('/').next()?.trim();
    (!seg.is_empty()).then(|| seg.to_string())
}

/// Rule ids from a list: first is the rule id, the others (de-duplicated) go to `other_rule_ids`.
fn split_rule_ids(ids: Vec<String>) -> (Option<String>, Vec<String>) {
    let mut segs: Vec<String> = Vec::new();
    for id in ids.iter().filter_map(|s| last_segment(s)) {
        if !segs.iter().any(|x| x.eq_ignore_ascii_case(&id)) {
            segs.push(id);
        }
    }
    let mut it = segs.into_iter();
    let first = it.next();
    (first, it.collect())
}

// ---------------------------------------------------------------------------------------------
// Shapes A and B: incidents
// ---------------------------------------------------------------------------------------------

fn parse_incident(
    body: &Value,
    incident: &Value,
    envelope: bool,
    ctx: &ParseContext,
) -> Result<Vec<ParsedItem>, ParseError> {
    let empty = Map::new();
    let p = incident.get("properties").and_then(Value::as_object).unwrap_or(&empty);
    let prefix = if envelope { "object.properties" } else { "properties" };

    let title = non_empty_str(p.get("title"));
    let severity_original = p.get("severity").and_then(scalar_string);
    if title.is_none() && severity_original.is_none() {
        return Err(ParseError::invalid(
            format!("{prefix}.title"),
            "missing: properties.title or properties.severity is required",
        ));
    }

    let mut d = AlertDraft::new(SourceName::Sentinel, clean_title(title, UNTITLED_INCIDENT));
    d.severity = map_severity(severity_original.as_deref());
    d.severity_original = severity_original;
    d.occurred_at = ["firstActivityTimeUtc", "createdTimeUtc"]
        .iter()
        .find_map(|k| p.get(*k).and_then(timestamp::parse_value));
    d.description = clean_description(non_empty_str(p.get("description")));
    d.tags = clean_tags(
        p.get("labels")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|l| non_empty_str(l.get("labelName"))),
    );
    d.source_alert_id = non_empty_str(incident.get("name")).map(str::to_lowercase).or_else(|| {
        // The ARM id ends with `/Incidents/<name>`.
        let id = non_empty_str(incident.get("id"))?;
        let lower = id.to_ascii_lowercase();
        lower.contains("/incidents/").then(|| last_segment(&lower)).flatten()
    });

    // Detection rule, named after the analytic rule and never after the incident title: the
    // first incident would otherwise name the rule for every later incident of that rule.
    let (rule_id, other_ids) = split_rule_ids(string_list(p.get("relatedAnalyticRuleIds"), None));
    let alerts = p.get("alerts").and_then(Value::as_array);
    let first_alert = alerts.and_then(|a| a.first()).and_then(|a| a.get("properties"));
    let rule_name = first_alert
        .and_then(|ap| ap.get("additionalData"))
        .and_then(|ad| non_empty_str(ad.get("Analytic Rule Name")))
        .or_else(|| first_alert.and_then(|ap| non_empty_str(ap.get("alertDisplayName"))))
        .map(str::to_string);
    d.detection_rule_ref = rule_ref(rule_id, rule_name);

    // MITRE.
    let additional = p.get("additionalData");
    for t in string_list(additional.and_then(|a| a.get("tactics")), Some(',')) {
        d.mitre.add_tactic_str(&t);
    }
    for t in string_list(additional.and_then(|a| a.get("techniques")), Some(',')) {
        d.mitre.add_technique_str(&t);
    }
    for alert in alerts.into_iter().flatten() {
        let ap = alert.get("properties");
        for t in string_list(ap.and_then(|x| x.get("tactics")), Some(',')) {
            d.mitre.add_tactic_str(&t);
        }
        for t in string_list(ap.and_then(|x| x.get("techniques")), Some(',')) {
            d.mitre.add_technique_str(&t);
        }
        for t in string_list(ap.and_then(|x| x.get("subTechniques")), Some(',')) {
            d.mitre.add_subtechnique_str(&t);
        }
    }

    d.deep_link = clean_link(non_empty_str(p.get("incidentUrl")));

    // Extra facts.
    d.set_extra("incident_number", p.get("incidentNumber"));
    d.set_extra("status", p.get("status"));
    d.set_extra("provider_name", p.get("providerName"));
    if envelope {
        d.set_extra("event_type", body.get("objectEventType"));
    }
    d.set_extra("alerts_count", additional.and_then(|a| a.get("alertsCount")));
    d.set_extra("product_names", additional.and_then(|a| a.get("alertProductNames")));
    if envelope {
        d.set_extra("workspace_id", body.get("workspaceId"));
    }
    d.set_extra_list("other_rule_ids", other_ids);

    // Entities: properties.relatedEntities[], and a top-level Entities[] (array or JSON string).
    let mut walker = EntityWalker::new(&mut d.indicators, &mut d.hosts);
    if let Some(related) = p.get("relatedEntities") {
        walker.walk(related, "relatedEntities");
    }
    let mut roots: Vec<&Value> = vec![body];
    if envelope {
        roots.push(incident);
    }
    for root in roots {
        if let Some((key, ents)) = root.as_object().and_then(|o| get_ci(o, "Entities")) {
            if let Some(decoded) = decode_json_string(ents) {
                walker.walk(&decoded, key);
            }
        }
    }

    Ok(vec![ParsedItem::Alert(Box::new(d.finish(body, &[], ctx)))])
}

// ---------------------------------------------------------------------------------------------
// Shape D: alert object (Azure Security Insights REST, playbooks)
// ---------------------------------------------------------------------------------------------

/// An alert rather than an incident: `kind` is `SecurityAlert`, or (no `kind`) the properties
/// carry alert fields and no incident title.
fn is_rest_alert(obj: &Map<String, Value>, p: &Map<String, Value>) -> bool {
    match non_empty_str(obj.get("kind")) {
        Some(kind) => kind.eq_ignore_ascii_case("SecurityAlert"),
        None => {
            !p.contains_key("title")
                && !p.contains_key("incidentNumber")
                && (p.contains_key("alertDisplayName") || p.contains_key("systemAlertId"))
        }
    }
}

fn parse_rest_alert(body: &Value, p: &Map<String, Value>, ctx: &ParseContext) -> ParsedItem {
    let display = non_empty_str(p.get("alertDisplayName"));
    let mut d = AlertDraft::new(
        SourceName::Sentinel,
        clean_title(display.or(non_empty_str(p.get("friendlyName"))), UNTITLED_ALERT),
    );
    let severity_original = p.get("severity").and_then(scalar_string);
    d.severity = map_severity(severity_original.as_deref());
    d.severity_original = severity_original;
    d.occurred_at = ["startTimeUtc", "timeGenerated"]
        .iter()
        .find_map(|k| p.get(*k).and_then(timestamp::parse_value));
    d.description = clean_description(non_empty_str(p.get("description")));
    // `systemAlertId` lower-cased, as in shape C, so the same alert sent both ways is one alert;
    // the entity's own name (the same GUID in practice) otherwise.
    d.source_alert_id = p
        .get("systemAlertId")
        .and_then(scalar_string)
        .or_else(|| non_empty_str(body.get("name")).map(str::to_string))
        .or_else(|| non_empty_str(body.get("id")).and_then(last_segment))
        .map(|s| s.to_lowercase());

    // additionalData mirrors the SecurityAlert row's ExtendedProperties.
    let ad = p.get("additionalData").and_then(decode_json_string);
    let ad_map = ad.as_ref().and_then(Value::as_object);
    let ad_field = |name: &str| ad_map.and_then(|m| get_ci(m, name)).map(|(_, v)| v);
    let (analytic_id, other_ids) = split_rule_ids(string_list(ad_field("Analytic Rule Ids"), Some(',')));
    let rule_name = non_empty_str(ad_field("Analytic Rule Name")).map(str::to_string);
    d.detection_rule_ref = match analytic_id {
        // A scheduled analytic: its name, else the display name (which defaults to it).
        Some(id) => rule_ref(Some(id), rule_name.or(display.map(str::to_string))),
        // A product alert: the alert type is the rule; display names vary per alert.
        None => rule_ref(p.get("alertType").and_then(scalar_string), rule_name),
    };

    for t in string_list(p.get("tactics"), Some(',')) {
        d.mitre.add_tactic_str(&t);
    }
    for t in string_list(p.get("techniques"), Some(',')) {
        d.mitre.add_technique_str(&t);
    }
    for t in string_list(p.get("subTechniques"), Some(',')) {
        d.mitre.add_subtechnique_str(&t);
    }

    d.deep_link = clean_link(non_empty_str(p.get("alertLink")));
    d.set_extra("status", p.get("status"));
    d.set_extra("alert_type", p.get("alertType"));
    d.set_extra("product_name", p.get("productName"));
    d.set_extra("product_component_name", p.get("productComponentName"));
    d.set_extra("vendor_name", p.get("vendorName"));
    d.set_extra("provider_alert_id", p.get("providerAlertId"));
    d.set_extra("confidence_score", p.get("confidenceScore"));
    d.set_extra("compromised_entity", p.get("compromisedEntity"));
    d.set_extra("end_time", p.get("endTimeUtc"));
    d.set_extra_list("other_rule_ids", other_ids);

    // Entities: properties.entities (array or JSON string), and a top-level Entities as the
    // incident shapes accept.
    let mut walker = EntityWalker::new(&mut d.indicators, &mut d.hosts);
    if let Some((key, ents)) = get_ci(p, "entities") {
        if let Some(decoded) = decode_json_string(ents) {
            walker.walk(&decoded, &format!("properties.{key}"));
        }
    }
    if let Some((key, ents)) = body.as_object().and_then(|o| get_ci(o, "Entities")) {
        if let Some(decoded) = decode_json_string(ents) {
            walker.walk(&decoded, key);
        }
    }
    ParsedItem::Alert(Box::new(d.finish(body, &[], ctx)))
}

// ---------------------------------------------------------------------------------------------
// Shape C: SecurityAlert row
// ---------------------------------------------------------------------------------------------

/// A column, matched exactly first and then ignoring case.
fn col<'a>(row: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    get_ci(row, name).map(|(_, v)| v).filter(|v| !v.is_null())
}

fn parse_security_alert(body: &Value, row: &Map<String, Value>, ctx: &ParseContext) -> ParsedItem {
    let display = non_empty_str(col(row, "DisplayName"));
    let alert_name = non_empty_str(col(row, "AlertName"));
    let mut d = AlertDraft::new(
        SourceName::Sentinel,
        clean_title(display.or(alert_name), UNTITLED_ALERT),
    );
    let severity_original = col(row, "AlertSeverity").and_then(scalar_string);
    d.severity = map_severity(severity_original.as_deref());
    d.severity_original = severity_original;
    d.occurred_at = ["StartTime", "TimeGenerated"]
        .iter()
        .find_map(|k| col(row, k).and_then(timestamp::parse_value));
    d.description = clean_description(non_empty_str(col(row, "Description")));
    d.source_alert_id = col(row, "SystemAlertId")
        .and_then(scalar_string)
        .map(|s| s.to_lowercase());

    // ExtendedProperties: a JSON-encoded object (or already decoded).
    let ext = col(row, "ExtendedProperties")
        .and_then(decode_json_string)
        .filter(Value::is_object);
    let ext_map = ext.as_ref().and_then(Value::as_object);
    let ext_field = |name: &str| ext_map.and_then(|m| get_ci(m, name)).map(|(_, v)| v);

    let (mut rule_id, other_ids) = split_rule_ids(string_list(ext_field("Analytic Rule Ids"), Some(',')));
    if rule_id.is_none() {
        rule_id = col(row, "AlertType").and_then(scalar_string);
    }
    let rule_name = non_empty_str(ext_field("Analytic Rule Name"))
        .or(alert_name)
        .map(str::to_string);
    d.detection_rule_ref = rule_ref(rule_id, rule_name);

    // MITRE: Tactics is comma-separated; Techniques / SubTechniques are JSON-string arrays.
    for t in string_list(col(row, "Tactics"), Some(',')) {
        d.mitre.add_tactic_str(&t);
    }
    for t in string_list(col(row, "Techniques"), Some(',')) {
        d.mitre.add_technique_str(&t);
    }
    for t in string_list(col(row, "SubTechniques"), Some(',')) {
        d.mitre.add_subtechnique_str(&t);
    }

    d.deep_link = clean_link(non_empty_str(col(row, "AlertLink")));
    d.set_extra("product_name", col(row, "ProductName"));
    d.set_extra("provider_name", col(row, "ProviderName"));
    d.set_extra("confidence_score", col(row, "ConfidenceScore"));
    d.set_extra("compromised_entity", col(row, "CompromisedEntity"));
    d.set_extra_list("other_rule_ids", other_ids);

    if let Some((key, ents)) = get_ci(row, "Entities") {
        if let Some(decoded) = decode_json_string(ents) {
            let mut walker = EntityWalker::new(&mut d.indicators, &mut d.hosts);
            walker.walk(&decoded, key);
        }
    }
    ParsedItem::Alert(Box::new(d.finish(body, &[], ctx)))
}

// ---------------------------------------------------------------------------------------------
// Entity walker (§2.4)
// ---------------------------------------------------------------------------------------------

/// Walks entity arrays, resolving `$id` / `$ref`, and applies the entity table.
pub(crate) struct EntityWalker<'s> {
    indicators: &'s mut IndicatorSet,
    hosts: &'s mut HostSet,
    entities: usize,
}

/// Per-array state: the `$id` map and the ids already visited.
struct IdState<'a> {
    ids: HashMap<String, &'a Value>,
    visited: HashSet<String>,
}

fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl<'s> EntityWalker<'s> {
    pub fn new(indicators: &'s mut IndicatorSet, hosts: &'s mut HostSet) -> Self {
        Self {
            indicators,
            hosts,
            entities: 0,
        }
    }

    /// Number of entities read so far (tests).
    #[cfg(test)]
    pub fn entity_count(&self) -> usize {
        self.entities
    }

    /// Walk one entity array (or a single entity object) whose source field is `base`.
    pub fn walk(&mut self, root: &Value, base: &str) {
        let mut state = IdState {
            ids: HashMap::new(),
            visited: HashSet::new(),
        };
        collect_ids(root, &mut state.ids, 0);
        match root {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.visit(item, format!("{base}[{i}]"), 1, &mut state);
                }
            }
            Value::Object(_) => self.visit(root, base.to_string(), 1, &mut state),
            _ => {}
        }
    }

    fn visit<'a>(&mut self, v: &'a Value, path: String, depth: usize, state: &mut IdState<'a>) {
        if depth > MAX_ENTITY_DEPTH || self.entities >= MAX_ENTITIES {
            return;
        }
        match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.visit(item, format!("{path}[{i}]"), depth + 1, state);
                }
            }
            Value::Object(m) => {
                if m.len() == 1 {
                    if let Some(r) = m.get("$ref") {
                        let target = id_string(r).and_then(|r| state.ids.get(&r).copied());
                        if let Some(target) = target {
                            self.visit(target, path, depth, state);
                        }
                        return;
                    }
                }
                if let Some(id) = m.get("$id").and_then(id_string) {
                    if !state.visited.insert(id) {
                        return;
                    }
                }
                if let Some(kind) = entity_kind(m) {
                    self.entities += 1;
                    self.apply(&kind, m, &path);
                }
                for (k, child) in m {
                    if child.is_object() || child.is_array() {
                        self.visit(child, format!("{path}.{k}"), depth + 1, state);
                    }
                }
            }
            _ => {}
        }
    }

    /// Apply the entity table to one entity.
    fn apply(&mut self, kind: &str, m: &Map<String, Value>, path: &str) {
        let f = EntityFields::new(m, path);
        match kind {
            "ip" => f.add(self.indicators, IndicatorType::Ip, "address"),
            "account" => {
                let name = f.get("accountName").or_else(|| f.get("name"));
                let suffix = f.get("upnSuffix");
                if let (Some((nf, n)), Some((_, s))) = (&name, &suffix) {
                    let v = if n.contains('@') {
                        n.to_string()
                    } else {
                        format!("{n}@{s}")
                    };
                    self.indicators.add(IndicatorType::Account, &v, nf);
                } else if let Some((uf, u)) = f.get("userPrincipalName") {
                    self.indicators.add(IndicatorType::Account, &u, &uf);
                } else if let Some((nf, n)) = name {
                    self.indicators.add(IndicatorType::Account, &n, &nf);
                } else if let Some((af, a)) = f.get("aadUserId") {
                    self.indicators.add(IndicatorType::Account, &a, &af);
                }
            }
            "url" => f.add(self.indicators, IndicatorType::Url, "url"),
            "filehash" => {
                let alg = f.get("algorithm").map(|(_, a)| a.to_ascii_lowercase());
                if matches!(alg.as_deref(), Some("md5" | "sha1" | "sha256")) {
                    if let Some((hf, h)) = f.get("hashValue").or_else(|| f.get("value")) {
                        self.indicators.add(IndicatorType::HashSha256, &h, &hf);
                    }
                }
            }
            "dnsresolution" | "dns" => f.add(self.indicators, IndicatorType::Domain, "domainName"),
            "mailbox" => {
                f.add(self.indicators, IndicatorType::Email, "mailboxPrimaryAddress");
                f.add(self.indicators, IndicatorType::Account, "upn");
            }
            "mailmessage" => {
                for key in ["sender", "p1Sender", "p2Sender", "recipient"] {
                    f.add(self.indicators, IndicatorType::Email, key);
                }
                f.add(self.indicators, IndicatorType::Ip, "senderIP");
                f.add(self.indicators, IndicatorType::Url, "urls");
            }
            "host" => {
                let host = f.get("hostName").map(|(_, h)| h);
                let domain = f.get("dnsDomain").map(|(_, d)| d);
                let name = match (host, domain) {
                    (Some(h), Some(d)) if !h.contains('.') => Some(format!("{h}.{d}")),
                    (Some(h), _) => Some(h.to_string()),
                    (None, _) => f.get("netBiosName").map(|(_, n)| n.to_string()),
                };
                if let Some(n) = name {
                    self.hosts.add(&n);
                }
            }
            _ => {}
        }
    }
}

/// The entity type: `kind` (Logic Apps / REST, PascalCase) wins over `Type` (SecurityAlert,
/// lowercase), both matched ignoring case. Returned lowercased.
fn entity_kind(m: &Map<String, Value>) -> Option<String> {
    ["kind", "type"].iter().find_map(|k| {
        get_ci(m, k)
            .and_then(|(_, v)| v.as_str())
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
    })
}

/// Field access on one entity: under `properties` when the entity has that object (Logic Apps /
/// REST form, whose outer `name` is the entity's GUID and must not be read as an account name),
/// else on the object itself (SecurityAlert form). Names are matched ignoring case.
struct EntityFields<'a> {
    containers: Vec<(&'a Map<String, Value>, String)>,
}

impl<'a> EntityFields<'a> {
    fn new(m: &'a Map<String, Value>, path: &str) -> Self {
        let container = match get_ci(m, "properties") {
            Some((k, Value::Object(props))) => (props, format!("{path}.{k}")),
            _ => (m, path.to_string()),
        };
        Self {
            containers: vec![container],
        }
    }

    /// First non-empty string (or number) for `name`, with its source path.
    fn get(&self, name: &str) -> Option<(String, String)> {
        self.containers.iter().find_map(|(m, base)| {
            let (k, v) = get_ci(m, name)?;
            scalar_string(v).map(|s| (format!("{base}.{k}"), s))
        })
    }

    /// Raw value for `name` (any JSON type), with its source path.
    fn raw(&self, name: &str) -> Option<(String, &'a Value)> {
        self.containers.iter().find_map(|(m, base)| {
            let (k, v) = get_ci(m, name)?;
            (!v.is_null()).then(|| (format!("{base}.{k}"), v))
        })
    }

    /// Add the value(s) of `name` as indicators of `kind`.
    fn add(&self, set: &mut IndicatorSet, kind: IndicatorType, name: &str) {
        if let Some((field, v)) = self.raw(name) {
            match v {
                Value::Object(_) => set.count_dropped(1),
                other => set.add_json(kind, other, &field),
            }
        }
    }
}

fn collect_ids<'a>(v: &'a Value, ids: &mut HashMap<String, &'a Value>, depth: usize) {
    if depth > MAX_ID_WALK_DEPTH {
        return;
    }
    match v {
        Value::Object(m) => {
            if let Some(id) = m.get("$id").and_then(id_string) {
                ids.entry(id).or_insert(v);
            }
            for child in m.values() {
                collect_ids(child, ids, depth + 1);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_ids(item, ids, depth + 1);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn walk(v: &Value) -> (Vec<(String, String, String)>, Vec<String>, usize) {
        let mut set = IndicatorSet::new();
        let mut hosts = HostSet::new();
        let mut w = EntityWalker::new(&mut set, &mut hosts);
        w.walk(v, "Entities");
        let n = w.entity_count();
        let items = set
            .into_vec()
            .into_iter()
            .map(|i| (i.indicator_type.as_str().to_string(), i.value, i.source_field))
            .collect();
        (items, hosts.into_vec(), n)
    }

    #[test]
    fn ref_resolves_once() {
        let v = json!([
            {"$id": "2", "Type": "process", "ProcessId": "4242",
             "Account": {"$ref": "4"}, "Host": {"$ref": "5"}},
            {"$id": "4", "Type": "account", "Name": "JDoe", "UPNSuffix": "Contoso.com"},
            {"$id": "5", "Type": "host", "HostName": "WS01", "DnsDomain": "contoso.local"},
            {"$ref": "4"}
        ]);
        let (items, hosts, n) = walk(&v);
        assert_eq!(
            items,
            vec![(
                "account".into(),
                "jdoe@contoso.com".into(),
                "Entities[0].Account.Name".into()
            )]
        );
        assert_eq!(hosts, vec!["ws01.contoso.local"]);
        assert_eq!(n, 3);
    }

    #[test]
    fn ref_cycles_terminate() {
        let v = json!([
            {"$id": "1", "Type": "process", "Parent": {"$ref": "2"}},
            {"$id": "2", "Type": "process", "Parent": {"$ref": "1"}, "Child": {"$ref": "2"}},
            {"$id": "3", "Type": "ip", "Address": "8.8.8.8", "Self": {"$ref": "3"}},
            {"$ref": "missing"},
            {"$ref": {"weird": true}}
        ]);
        let (items, _, n) = walk(&v);
        assert_eq!(items.len(), 1);
        assert_eq!(n, 3);
    }

    #[test]
    fn depth_and_count_limits() {
        // 40 nested levels: only the first 16 are walked.
        let mut v = json!({"Type": "ip", "Address": "1.1.1.1"});
        for i in 0..40 {
            v = json!({"Type": "file", "Nested": v, "Address": format!("9.9.9.{i}")});
        }
        let (_, _, n) = walk(&json!([v]));
        assert!(n <= MAX_ENTITY_DEPTH, "{n}");
        // 600 entities: only 500 are read.
        let many: Vec<Value> = (0..600)
            .map(|i| json!({"Type": "ip", "Address": format!("8.8.{}.{}", i / 256, i % 256)}))
            .collect();
        let (items, _, n) = walk(&Value::Array(many));
        assert_eq!(n, MAX_ENTITIES);
        assert_eq!(items.len(), MAX_ENTITIES);
    }

    #[test]
    fn kind_beats_type_and_properties_are_read() {
        let v = json!([{
            "id": "/x/Entities/1", "type": "Microsoft.SecurityInsights/Entities", "kind": "Ip",
            "properties": {"address": "8.8.8.8", "friendlyName": "8.8.8.8"}
        }]);
        let (items, _, _) = walk(&v);
        assert_eq!(
            items,
            vec![("ip".into(), "8.8.8.8".into(), "Entities[0].properties.address".into())]
        );
    }

    #[test]
    fn outer_name_of_a_logic_apps_entity_is_not_an_account_name() {
        let v = json!([{
            "name": "77aa88bb-0000-4000-8000-000000000abc", "kind": "Account",
            "properties": {"aadUserId": "0F1E2D3C-4B5A-6978-8A9B-0C1D2E3F4A5B"}
        }]);
        let (items, _, _) = walk(&v);
        assert_eq!(
            items,
            vec![(
                "account".into(),
                "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b".into(),
                "Entities[0].properties.aadUserId".into()
            )]
        );
    }

    #[test]
    fn severity_table() {
        assert_eq!(map_severity(Some("HIGH")), Severity::High);
        assert_eq!(map_severity(Some("none")), Severity::Informational);
        assert_eq!(map_severity(Some("Critical")), Severity::Pending);
        assert_eq!(map_severity(None), Severity::Pending);
    }
}
