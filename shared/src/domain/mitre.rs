//! MITRE ATT&CK references (spec `sources.md` §1 "MITRE").
//!
//! IDs are recognised by pattern: `TA\d{4}` tactic, `T\d{4}` technique, `T\d{4}\.\d{3}`
//! sub-technique. A sub-technique also adds its parent technique (id only) to `techniques`, so
//! filters and targeting rules on `T1566` see an alert that only names `T1566.002`. Strings
//! shaped `"T1078 - Valid Accounts"` split into id and name. Tactic names are matched ignoring
//! case, spaces, `_` and `-`, and written with the canonical spelling.

use serde::{Deserialize, Serialize};

/// One tactic / technique / sub-technique. Either part may be unknown.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MitreRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl MitreRef {
    /// `"ID - Name"`, or just the ID / name when only one is known.
    pub fn rule_string(&self) -> Option<String> {
        match (&self.id, &self.name) {
            (Some(id), Some(name)) => Some(format!("{id} - {name}")),
            (Some(id), None) => Some(id.clone()),
            (None, Some(name)) => Some(name.clone()),
            (None, None) => None,
        }
    }
}

/// What an ID string denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MitreKind {
    Tactic,
    Technique,
    Subtechnique,
}

/// Canonical tactic table: (id, name).
pub(crate) const TACTICS: [(&str, &str); 16] = [
    ("TA0043", "Reconnaissance"),
    ("TA0042", "Resource Development"),
    ("TA0001", "Initial Access"),
    ("TA0002", "Execution"),
    ("TA0003", "Persistence"),
    ("TA0004", "Privilege Escalation"),
    ("TA0005", "Defense Evasion"),
    ("TA0006", "Credential Access"),
    ("TA0007", "Discovery"),
    ("TA0008", "Lateral Movement"),
    ("TA0009", "Collection"),
    ("TA0011", "Command and Control"),
    ("TA0010", "Exfiltration"),
    ("TA0040", "Impact"),
    ("TA0106", "Impair Process Control"),
    ("TA0107", "Inhibit Response Function"),
];

/// Longest string we treat as a MITRE entry (ids, names and "ID - Name").
const MAX_ENTRY_LEN: usize = 200;
/// Entries kept per list.
const MAX_ENTRIES: usize = 100;

fn squash(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-' | '\t'))
        .flat_map(|c| c.to_lowercase())
        .collect()
}

/// Look up a tactic by name, ignoring case, spaces, `_` and `-`.
pub(crate) fn tactic_by_name(name: &str) -> Option<(&'static str, &'static str)> {
    let key = squash(name);
    if key.is_empty() {
        return None;
    }
    TACTICS.iter().copied().find(|(_, n)| squash(n) == key)
}

/// Canonical name of a tactic ID.
pub(crate) fn tactic_name(id: &str) -> Option<&'static str> {
    TACTICS
        .iter()
        .find(|(i, _)| i.eq_ignore_ascii_case(id))
        .map(|(_, n)| *n)
}

/// Classify an exact ID string (case-insensitive); returns the upper-cased ID.
pub(crate) fn classify_id(s: &str) -> Option<(MitreKind, String)> {
    let s = s.trim();
    let b = s.as_bytes();
    let digits = |r: &[u8]| !r.is_empty() && r.iter().all(u8::is_ascii_digit);
    if b.len() == 6 && b[..2].eq_ignore_ascii_case(b"TA") && digits(&b[2..]) {
        return Some((MitreKind::Tactic, s.to_ascii_uppercase()));
    }
    if b.len() == 5 && b[0].eq_ignore_ascii_case(&b'T') && digits(&b[1..]) {
        return Some((MitreKind::Technique, s.to_ascii_uppercase()));
    }
    if b.len() == 9 && b[0].eq_ignore_ascii_case(&b'T') && digits(&b[1..5]) && b[5] == b'.' && digits(&b[6..]) {
        return Some((MitreKind::Subtechnique, s.to_ascii_uppercase()));
    }
    None
}

/// The parent technique of a sub-technique id (`T1566.002` → `T1566`); `None` for anything
/// else. Accepts `"T1566.002 - Name"` strings too.
pub(crate) fn parent_technique(s: &str) -> Option<String> {
    let id = s.split(" - ").next().unwrap_or(s).trim();
    match classify_id(id) {
        Some((MitreKind::Subtechnique, id)) => Some(id[..5].to_string()),
        _ => None,
    }
}

/// A technique list with the parent of every sub-technique added (id only) when no entry has
/// that id yet. Entries are ids or `"ID - Name"` strings (detection-rule form).
pub(crate) fn with_parent_techniques(techniques: &[String], subtechniques: &[String]) -> Vec<String> {
    let mut out = techniques.to_vec();
    let has = |list: &[String], id: &str| {
        list.iter()
            .any(|t| t.split(" - ").next().unwrap_or(t).trim().eq_ignore_ascii_case(id))
    };
    for sub in subtechniques.iter().chain(techniques) {
        if let Some(parent) = parent_technique(sub) {
            if !has(&out, &parent) {
                out.push(parent);
            }
        }
    }
    out
}

/// Split a free-form entry into `(id, name)`: `"T1078 - Valid Accounts"`, `"T1078"`,
/// `"TA0001: Initial Access"`, `"Valid Accounts (T1078)"` or a bare name.
pub(crate) fn parse_entry(s: &str) -> (Option<(MitreKind, String)>, Option<String>) {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > MAX_ENTRY_LEN {
        return (None, None);
    }
    if let Some(id) = classify_id(s) {
        return (Some(id), None);
    }
    // "ID - Name", "ID: Name", "ID Name"
    let id_end = s
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || matches!(c, '-' | ':' | '–' | '—'))
        .map(|(i, _)| i);
    if let Some(end) = id_end {
        if let Some(id) = classify_id(&s[..end]) {
            let rest = s[end..]
                .trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '-' | ':' | '–' | '—'))
                .trim();
            let name = (!rest.is_empty()).then(|| rest.to_string());
            return (Some(id), name);
        }
    }
    // "Name (ID)"
    if let Some(open) = s.rfind('(') {
        if s.ends_with(')') {
            let inner = &s[open + 1..s.len() - 1];
            if let Some(id) = classify_id(inner) {
                let name = s[..open].trim();
                let name = (!name.is_empty()).then(|| name.to_string());
                return (Some(id), name);
            }
        }
    }
    (None, Some(s.to_string()))
}

/// Tactics, techniques and sub-techniques of an alert or rule.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Mitre {
    #[serde(default)]
    pub tactics: Vec<MitreRef>,
    #[serde(default)]
    pub techniques: Vec<MitreRef>,
    #[serde(default)]
    pub subtechniques: Vec<MitreRef>,
}

impl Mitre {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.tactics.is_empty() && self.techniques.is_empty() && self.subtechniques.is_empty()
    }

    /// Add an entry given as free text where a tactic is expected (a name without an ID is
    /// matched against the tactic table). An ID of another kind goes to its own list.
    pub fn add_tactic_str(&mut self, s: &str) {
        self.add_str(s, MitreKind::Tactic);
    }

    /// Add an entry given as free text where a technique is expected.
    pub fn add_technique_str(&mut self, s: &str) {
        self.add_str(s, MitreKind::Technique);
    }

    /// Add an entry given as free text where a sub-technique is expected.
    pub fn add_subtechnique_str(&mut self, s: &str) {
        self.add_str(s, MitreKind::Subtechnique);
    }

    /// Add a string only if it is exactly an ID (any kind). Returns whether it was one.
    pub fn add_id_only(&mut self, s: &str) -> bool {
        match classify_id(s) {
            Some((kind, id)) => {
                self.push(kind, Some(id), None);
                true
            }
            None => false,
        }
    }

    fn add_str(&mut self, s: &str, context: MitreKind) {
        match parse_entry(s) {
            (Some((kind, id)), name) => self.push(kind, Some(id), name),
            (None, Some(name)) => self.push(context, None, Some(name)),
            (None, None) => {}
        }
    }

    /// Add a structured `{id, name}` pair seen in a `context` list (Elastic `threat`).
    /// The ID pattern decides the list when the ID is recognisable.
    pub fn add_pair(&mut self, context: MitreKind, id: Option<&str>, name: Option<&str>) {
        let id = id.map(str::trim).filter(|s| !s.is_empty());
        let name = name
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.chars().count() <= MAX_ENTRY_LEN);
        match (id, name) {
            (Some(id), name) => match classify_id(id) {
                Some((kind, id)) => self.push(kind, Some(id), name.map(str::to_string)),
                None => {
                    // Not an ATT&CK id: keep the name only (or the raw text as a name).
                    let n = name.unwrap_or(id);
                    if n.chars().count() <= MAX_ENTRY_LEN {
                        self.push(context, None, Some(n.to_string()));
                    }
                }
            },
            (None, Some(name)) => self.add_str(name, context),
            (None, None) => {}
        }
    }

    fn push(&mut self, kind: MitreKind, id: Option<String>, name: Option<String>) {
        let (id, name) = if kind == MitreKind::Tactic {
            canonical_tactic(id, name)
        } else {
            (id, name)
        };
        if id.is_none() && name.is_none() {
            return;
        }
        if kind == MitreKind::Subtechnique {
            if let Some(parent) = id.as_deref().and_then(parent_technique) {
                self.push(MitreKind::Technique, Some(parent), None);
            }
        }
        let list = match kind {
            MitreKind::Tactic => &mut self.tactics,
            MitreKind::Technique => &mut self.techniques,
            MitreKind::Subtechnique => &mut self.subtechniques,
        };
        // De-duplicate: same id, or (for name-only entries) same squashed name.
        if let Some(id) = &id {
            if let Some(existing) = list.iter_mut().find(|e| e.id.as_deref() == Some(id)) {
                if existing.name.is_none() {
                    existing.name = name;
                }
                return;
            }
            // A name-only entry with the same name is upgraded with this id.
            if let Some(n) = &name {
                let key = squash(n);
                if let Some(existing) = list
                    .iter_mut()
                    .find(|e| e.id.is_none() && e.name.as_deref().map(squash) == Some(key.clone()))
                {
                    existing.id = Some(id.clone());
                    return;
                }
            }
        } else if let Some(n) = &name {
            let key = squash(n);
            if list.iter().any(|e| e.name.as_deref().map(squash) == Some(key.clone())) {
                return;
            }
        }
        if list.len() < MAX_ENTRIES {
            list.push(MitreRef { id, name });
        }
    }

    /// Strings for an auto-created detection rule: ("ID - Name" | ID | name) per list.
    pub fn rule_strings(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let conv = |l: &[MitreRef]| l.iter().filter_map(MitreRef::rule_string).collect();
        (conv(&self.tactics), conv(&self.techniques), conv(&self.subtechniques))
    }
}

/// Fill / fix a tactic's id and name from the table.
fn canonical_tactic(id: Option<String>, name: Option<String>) -> (Option<String>, Option<String>) {
    match (id, name) {
        (Some(id), Some(name)) => {
            let name = tactic_by_name(&name).map(|(_, n)| n.to_string()).unwrap_or(name);
            (Some(id), Some(name))
        }
        (Some(id), None) => {
            let name = tactic_name(&id).map(str::to_string);
            (Some(id), name)
        }
        (None, Some(name)) => match tactic_by_name(&name) {
            Some((i, n)) => (Some(i.to_string()), Some(n.to_string())),
            None => (None, Some(name)),
        },
        (None, None) => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: Option<&str>, name: Option<&str>) -> MitreRef {
        MitreRef {
            id: id.map(str::to_string),
            name: name.map(str::to_string),
        }
    }

    #[test]
    fn classify() {
        assert_eq!(classify_id("TA0001").map(|x| x.0), Some(MitreKind::Tactic));
        assert_eq!(classify_id("t1078").map(|x| x.1), Some("T1078".to_string()));
        assert_eq!(classify_id("T1078.004").map(|x| x.0), Some(MitreKind::Subtechnique));
        for bad in [
            "T107",
            "T10788",
            "TA001",
            "T1078.04",
            "T1078.0045",
            "X1078",
            "",
            "TA00011",
        ] {
            assert!(classify_id(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn parse_entries() {
        let (id, name) = parse_entry("T1078 - Valid Accounts");
        assert_eq!(id.map(|x| x.1), Some("T1078".into()));
        assert_eq!(name.as_deref(), Some("Valid Accounts"));
        let (id, name) = parse_entry("TA0001: Initial Access");
        assert_eq!(id.map(|x| x.0), Some(MitreKind::Tactic));
        assert_eq!(name.as_deref(), Some("Initial Access"));
        let (id, name) = parse_entry("Brute Force (T1110)");
        assert_eq!(id.map(|x| x.1), Some("T1110".into()));
        assert_eq!(name.as_deref(), Some("Brute Force"));
        let (id, name) = parse_entry("T1059.001-PowerShell");
        assert_eq!(id.map(|x| x.0), Some(MitreKind::Subtechnique));
        assert_eq!(name.as_deref(), Some("PowerShell"));
        let (id, name) = parse_entry("Token Impersonation");
        assert!(id.is_none());
        assert_eq!(name.as_deref(), Some("Token Impersonation"));
    }

    #[test]
    fn tactic_names_ignore_case_space_underscore_dash() {
        let mut m = Mitre::new();
        m.add_tactic_str("InitialAccess");
        m.add_tactic_str("initial_access");
        m.add_tactic_str("Initial-Access");
        m.add_tactic_str("TA0001");
        m.add_tactic_str("CommandAndControl");
        m.add_tactic_str("PreAttack");
        m.add_tactic_str("preattack");
        m.add_tactic_str("impairprocesscontrol");
        m.add_tactic_str("TA0004");
        assert_eq!(
            m.tactics,
            vec![
                r(Some("TA0001"), Some("Initial Access")),
                r(Some("TA0011"), Some("Command and Control")),
                r(None, Some("PreAttack")),
                r(Some("TA0106"), Some("Impair Process Control")),
                r(Some("TA0004"), Some("Privilege Escalation")),
            ]
        );
    }

    #[test]
    fn ids_route_by_pattern_and_subtechnique_adds_its_parent() {
        let mut m = Mitre::new();
        m.add_technique_str("T1059.001");
        m.add_technique_str("T1078 - Valid Accounts");
        m.add_technique_str("T1078");
        m.add_tactic_str("T1110");
        m.add_technique_str("TA0006");
        assert_eq!(m.subtechniques, vec![r(Some("T1059.001"), None)]);
        assert_eq!(
            m.techniques,
            vec![
                r(Some("T1059"), None),
                r(Some("T1078"), Some("Valid Accounts")),
                r(Some("T1110"), None)
            ]
        );
        assert_eq!(m.tactics, vec![r(Some("TA0006"), Some("Credential Access"))]);
        // A parent named later keeps its name.
        let mut m = Mitre::new();
        m.add_subtechnique_str("T1566.002 - Spearphishing Link");
        m.add_technique_str("T1566 - Phishing");
        assert_eq!(m.techniques, vec![r(Some("T1566"), Some("Phishing"))]);
        assert_eq!(m.subtechniques, vec![r(Some("T1566.002"), Some("Spearphishing Link"))]);
    }

    #[test]
    fn parents_of_rule_lists() {
        assert_eq!(
            parent_technique("t1566.002 - Spearphishing Link").as_deref(),
            Some("T1566")
        );
        assert_eq!(parent_technique("T1566"), None);
        assert_eq!(parent_technique("Phishing"), None);
        let techs = vec!["T1566 - Phishing".to_string()];
        assert_eq!(
            with_parent_techniques(&techs, &["T1566.002".into(), "T1059.001 - PowerShell".into()]),
            vec!["T1566 - Phishing", "T1059"]
        );
        // A sub-technique written into the technique list also brings its parent.
        assert_eq!(
            with_parent_techniques(&["T1003.001".into()], &[]),
            vec!["T1003.001", "T1003"]
        );
    }

    #[test]
    fn dedupe_merges_names() {
        let mut m = Mitre::new();
        m.add_technique_str("T1078");
        m.add_technique_str("T1078 - Valid Accounts");
        m.add_technique_str("Brute Force");
        m.add_technique_str("T1110 - Brute Force");
        m.add_technique_str("brute force");
        assert_eq!(
            m.techniques,
            vec![
                r(Some("T1078"), Some("Valid Accounts")),
                r(Some("T1110"), Some("Brute Force"))
            ]
        );
    }

    #[test]
    fn rule_strings_forms() {
        let mut m = Mitre::new();
        m.add_tactic_str("TA0001");
        m.add_tactic_str("PreAttack");
        m.add_technique_str("T1078");
        m.add_subtechnique_str("T1078.004 - Cloud Accounts");
        let (t, te, st) = m.rule_strings();
        assert_eq!(t, vec!["TA0001 - Initial Access", "PreAttack"]);
        assert_eq!(te, vec!["T1078"]);
        assert_eq!(st, vec!["T1078.004 - Cloud Accounts"]);
        let mut sub_only = Mitre::new();
        sub_only.add_subtechnique_str("T1566.002");
        assert_eq!(
            sub_only.rule_strings().1,
            vec!["T1566"],
            "auto-created rules get the parent too"
        );
        let json = serde_json::to_value(&m).unwrap_or_default();
        assert_eq!(json["tactics"][1], serde_json::json!({"name": "PreAttack"}));
    }
}
