//! The demo library `calseta dev` loads (never a deployed stack: only the local stack calls
//! [`seed`]): detection rules for the demo alerts in `events/demo/` with MITRE lists,
//! documentation, false-positive tags and blind spots; an IR plan, a runbook, an SOP and a
//! detection guide with targeting rules; a handful of workflows. Everything is marked as demo
//! data (`(demo)` in titles, the `demo` tag, `created_by = 'calseta demo'`). Seeding is
//! idempotent: rows that exist (by rule key or title) are left alone.

use serde_json::{json, Value};

use crate::db::DbError;

/// The demo alerts `calseta demo` ingests, as each SIEM sends them: (source, file, body). They
/// use the indicators the provider simulator knows (a TOR exit node, a phishing URL, the EICAR
/// test file, an Okta/Entra user), and two of them share an account and an IP, so one lists the
/// other in `past_alerts`.
pub const DEMO_ALERTS: [(&str, &str, &str); 4] = [
    (
        "elastic",
        "events/demo/elastic-impossible-travel.json",
        include_str!("../../events/demo/elastic-impossible-travel.json"),
    ),
    (
        "sentinel",
        "events/demo/sentinel-bec-incident.json",
        include_str!("../../events/demo/sentinel-bec-incident.json"),
    ),
    (
        "splunk",
        "events/demo/splunk-brute-force.json",
        include_str!("../../events/demo/splunk-brute-force.json"),
    ),
    (
        "generic",
        "events/demo/generic-edr-malware.json",
        include_str!("../../events/demo/generic-edr-malware.json"),
    ),
];

/// What [`seed`] added.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Seeded {
    pub detection_rules: u64,
    pub context_documents: u64,
    pub workflows: u64,
}

fn rules() -> Value {
    json!([
        {
            "source_name": "sentinel", "source_rule_id": "0b9ae89d-8cad-461c-808f-0494f70ad5c4",
            "name": "Unfamiliar sign-in followed by inbox rule", "severity": "High", "priority": "High",
            "mitre_tactics": ["TA0001 - Initial Access", "TA0003 - Persistence", "TA0009 - Collection"],
            "mitre_techniques": ["T1078 - Valid Accounts", "T1114 - Email Collection"],
            "mitre_subtechniques": ["T1114.003 - Email Forwarding Rule"],
            "data_sources": ["Entra ID sign-in logs", "Exchange Online audit"],
            "goal": "Catch business email compromise early: a risky sign-in followed within an hour by a new inbox rule that forwards or hides mail.",
            "false_positive_tags": ["travel", "new-device", "user-created-rule"],
            "blind_spots": ["Rules created through Graph API by service principals", "Sign-ins through a token replayed from a trusted device"],
            "documentation": "## Unfamiliar sign-in followed by inbox rule (demo)\n\n**What fires it:** an Entra ID sign-in flagged unfamiliar, then `New-InboxRule` or `Set-InboxRule` from the same account within 60 minutes.\n\n**Triage:**\n1. Was the sign-in location expected (travel, VPN)? Check the account's recent sign-ins.\n2. Does the rule forward externally, delete, or move to RSS/Archive? Those are the BEC patterns.\n3. Any MFA registration changes in the same window?\n\n**Escalate when** the rule forwards outside the organisation or the sign-in came from an anonymising network."
        },
        {
            "source_name": "elastic", "source_rule_id": "impossible-travel-v1",
            "name": "Impossible Travel", "severity": "High",
            "priority": "High — likely credential compromise or session hijacking",
            "mitre_tactics": ["TA0001 - Initial Access", "TA0005 - Defense Evasion", "TA0006 - Credential Access"],
            "mitre_techniques": ["T1078 - Valid Accounts"],
            "mitre_subtechniques": ["T1078.004 - Cloud Accounts"],
            "data_sources": ["Okta system log", "Entra ID sign-in logs"],
            "goal": "Detect credential compromise or session hijacking via geo-velocity analysis.",
            "false_positive_tags": ["vpn", "corporate_proxy", "executive_travel"],
            "blind_spots": ["same-region cross-state travel", "VPN or proxy exit nodes"],
            "documentation": "## Impossible Travel (demo)\n\nCorrelates sign-in timestamps and geolocation to flag logins from two countries within a short window — physically impossible without credential theft or session hijacking.\n\n## Responses\n1. Confirm travel or VPN activity with the user\n2. Force sign-out and reset credentials\n3. Review concurrent risky sign-in alerts\n4. Notify the SOC team of a potential compromise"
        },
        {
            "source_name": "splunk", "source_rule_id": "Brute Force Login Attempt",
            "name": "Brute Force Login Attempt", "severity": "High", "priority": "Medium",
            "mitre_tactics": ["TA0006 - Credential Access"],
            "mitre_techniques": ["T1110 - Brute Force"],
            "mitre_subtechniques": ["T1110.001 - Password Guessing"],
            "data_sources": ["linux_secure", "VPN authentication logs"],
            "goal": "Detect password guessing against internet-facing SSH and VPN endpoints (50+ failures from one source in 10 minutes).",
            "false_positive_tags": ["vulnerability-scanner", "misconfigured-service-account"],
            "blind_spots": ["Slow attacks below the threshold", "Distributed attempts from many sources"],
            "documentation": "## Brute Force Login Attempt (demo)\n\n**Triage:** is the source an approved scanner? Did any attempt succeed afterwards (same source, same user)? Is the targeted account privileged?"
        },
        {
            "source_name": "generic", "source_rule_id": "edr-known-malware-exec",
            "name": "Known Malware Execution", "severity": "Critical", "priority": "Critical",
            "mitre_tactics": ["TA0002 - Execution"],
            "mitre_techniques": ["T1204 - User Execution"],
            "mitre_subtechniques": ["T1204.002 - Malicious File"],
            "data_sources": ["EDR process events"],
            "goal": "Stop and scope execution of files with a known-malicious hash.",
            "false_positive_tags": ["security-testing", "av-test-file"],
            "blind_spots": ["Unknown or repacked malware (new hashes)", "Hosts without the EDR agent"],
            "documentation": "## Known Malware Execution (demo)\n\nThe EDR matched a file hash to threat intelligence at execution time.\n\n**Triage:** where did the file come from (browser download, email attachment, USB)? Did it run before the block? Which other hosts have it?"
        }
    ])
}

fn documents() -> Value {
    json!([
        {
            "title": "Company Incident Response Plan (demo)", "document_type": "ir_plan", "is_global": true,
            "description": "Severity levels, who to call, and evidence handling.",
            "content": "# Incident Response Plan (demo)\n\n## Severity levels\n- **SEV1** — confirmed compromise of a privileged account or customer data: page the IR lead, open a bridge.\n- **SEV2** — confirmed compromise of a standard account or host: IR lead within 1 hour.\n- **SEV3** — suspicious activity under investigation.\n\n## First steps\n1. Contain: disable or isolate before deep analysis when the evidence is strong.\n2. Preserve: export logs before they roll over; never reboot a host under investigation.\n3. Record every action in the ticket with time and author.\n\n## Contacts\nIR lead: ir-lead@example.com · Legal: legal@example.com"
        },
        {
            "title": "Account Compromise Runbook (demo)", "document_type": "runbook", "is_global": false,
            "description": "What to do when an account looks taken over.",
            "targeting_rules": {
                "match_any": [
                    {"field": "indicator_type", "op": "contains", "value": "account"},
                    {"field": "mitre_tactic", "op": "contains", "value": "TA0001"}
                ],
                "match_all": [{"field": "severity", "op": "gte", "value": "Medium"}]
            },
            "content": "# Account Compromise Runbook (demo)\n\n1. Revoke the user's sessions (workflow: Revoke User Sessions).\n2. Reset the password and re-register MFA (workflow: Reset User Password, needs approval).\n3. Review inbox rules, OAuth consents and MFA registrations from the last 7 days.\n4. Block the attacker IPs if they are not shared infrastructure (workflow: Block IP at Firewall).\n5. Close as True Positive with the actions taken in the notes."
        },
        {
            "title": "SSH Brute Force SOP (demo)", "document_type": "sop", "is_global": false,
            "description": "Standard handling of password-guessing alerts.",
            "targeting_rules": {
                "match_any": [
                    {"field": "source_name", "op": "eq", "value": "splunk"},
                    {"field": "mitre_technique", "op": "contains", "value": "T1110"}
                ]
            },
            "content": "# SSH Brute Force SOP (demo)\n\n- Approved scanners (10.20.0.0/24) → close as Benign Positive.\n- External source, no success → block the IP for 24 h, close as True Positive - Suspicious Activity.\n- Any successful login from the source → escalate as SEV2 and follow the Account Compromise Runbook."
        },
        {
            "title": "Malware Containment SOP (demo)", "document_type": "sop", "is_global": false,
            "description": "Containment steps when malware runs or is blocked on an endpoint.",
            "targeting_rules": {
                "match_any": [
                    {"field": "mitre_tactic", "op": "contains", "value": "TA0002"},
                    {"field": "indicator_type", "op": "in", "value": ["hash_md5", "hash_sha1", "hash_sha256"]}
                ],
                "match_all": [{"field": "severity", "op": "gte", "value": "High"}]
            },
            "content": "# Malware Containment SOP (demo)\n\n1. Isolate the host from the network (EDR network containment) if the file ran.\n2. Quarantine the hash everywhere (workflow: Quarantine File by Hash).\n3. Block the download URL and domain at the proxy.\n4. Collect the file and the process tree for analysis.\n5. Reimage when persistence is found."
        }
    ])
}

fn workflows() -> Value {
    json!([
        {"name": "Revoke User Sessions (demo)", "workflow_type": "indicator", "indicator_types": ["account"],
         "risk_level": "medium", "approval_mode": "agent_only", "time_saved_minutes": 10,
         "description": "Terminate all active sessions and refresh tokens of an account in the identity provider.",
         "documentation": "Input: the account (UPN or email). Effect: every session and refresh token is revoked; the user must sign in again. Safe to repeat."},
        {"name": "Reset User Password (demo)", "workflow_type": "indicator", "indicator_types": ["account"],
         "risk_level": "high", "approval_mode": "always", "time_saved_minutes": 15,
         "description": "Force a password reset and MFA re-registration.",
         "documentation": "Input: the account. Needs human approval: the user is locked out until the helpdesk verifies them."},
        {"name": "Block IP at Firewall (demo)", "workflow_type": "indicator", "indicator_types": ["ip"],
         "risk_level": "high", "approval_mode": "always", "time_saved_minutes": 20,
         "description": "Add an IP to the perimeter block list for 24 hours.",
         "documentation": "Input: a public IPv4/IPv6 address. Never block shared infrastructure (CDNs, cloud resolvers): check the ASN first."},
        {"name": "Quarantine File by Hash (demo)", "workflow_type": "indicator", "indicator_types": ["hash_md5", "hash_sha1", "hash_sha256"],
         "risk_level": "medium", "approval_mode": "agent_only", "time_saved_minutes": 15,
         "description": "Quarantine every copy of a file on managed endpoints.",
         "documentation": "Input: a file hash. The EDR quarantines matching files and reports the hosts."},
        {"name": "Open Incident Ticket (demo)", "workflow_type": "alert", "indicator_types": [],
         "risk_level": "low", "approval_mode": "never", "time_saved_minutes": 5,
         "description": "Open a ticket in the incident queue with the alert summary and the agent's findings.",
         "documentation": "Input: the alert uuid and a summary. Creates one ticket per alert (idempotent)."}
    ])
}

/// Loads the demo library; rows already there are left alone.
pub async fn seed(client: &mut deadpool_postgres::Object) -> Result<Seeded, DbError> {
    let tx = client.transaction().await?;
    let r = tx
        .execute(
            "INSERT INTO detection_rules (source_name, source_rule_id, name, severity, priority, mitre_tactics,
                 mitre_techniques, mitre_subtechniques, data_sources, goal, false_positive_tags, blind_spots,
                 documentation, created_by)
             SELECT source_name, source_rule_id, name, severity, priority, mitre_tactics, mitre_techniques,
                    mitre_subtechniques, data_sources, goal, false_positive_tags, blind_spots, documentation,
                    'calseta demo'
             FROM jsonb_to_recordset($1) AS x(source_name text, source_rule_id text, name text, severity text,
                 priority text, mitre_tactics text[], mitre_techniques text[], mitre_subtechniques text[],
                 data_sources text[], goal text, false_positive_tags text[], blind_spots text[], documentation text)
             ON CONFLICT (source_name, source_rule_id) DO NOTHING",
            &[&rules()],
        )
        .await?;
    let d = tx
        .execute(
            "INSERT INTO context_documents (title, document_type, is_global, description, content, tags, targeting_rules)
             SELECT title, document_type, is_global, description, content, '{demo}', targeting_rules
             FROM jsonb_to_recordset($1) AS x(title text, document_type text, is_global boolean, description text,
                 content text, targeting_rules jsonb)
             WHERE NOT EXISTS (SELECT 1 FROM context_documents c WHERE c.title = x.title)",
            &[&documents()],
        )
        .await?;
    let w = tx
        .execute(
            "INSERT INTO workflows (name, workflow_type, indicator_types, state, is_active, tags, risk_level,
                 approval_mode, time_saved_minutes, description, documentation)
             SELECT name, workflow_type, indicator_types, 'active', true, '{demo}', risk_level, approval_mode,
                    time_saved_minutes, description, documentation
             FROM jsonb_to_recordset($1) AS x(name text, workflow_type text, indicator_types text[], risk_level text,
                 approval_mode text, time_saved_minutes int, description text, documentation text)
             WHERE NOT EXISTS (SELECT 1 FROM workflows f WHERE f.name = x.name)",
            &[&workflows()],
        )
        .await?;
    tx.commit().await?;
    Ok(Seeded {
        detection_rules: r,
        context_documents: d,
        workflows: w,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::targeting::TargetingRules;

    #[test]
    fn the_library_is_valid_and_marked_as_demo() {
        for d in documents().as_array().unwrap() {
            assert!(d["title"].as_str().unwrap().ends_with("(demo)"));
            if let Some(r) = d.get("targeting_rules") {
                assert!(TargetingRules::parse(r).unwrap().is_some(), "{r}");
            }
        }
        // The runbook applies to an identity alert; the DNS guide does not.
        let facts = crate::context::targeting::AlertFacts {
            source_name: "generic".into(),
            severity: crate::domain::severity::Severity::High,
            tags: vec![],
            title: "Impossible travel".into(),
            detection_rule_id: None,
            detection_rule_name: None,
            mitre_tactics: vec!["TA0001".into()],
            mitre_techniques: vec!["T1078".into()],
            indicator_types: vec!["account".into(), "ip".into()],
        };
        let applies = |title: &str| {
            let d = documents()
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["title"] == title)
                .cloned()
                .unwrap();
            TargetingRules::parse(&d["targeting_rules"])
                .unwrap()
                .unwrap()
                .evaluate(&facts)
                == crate::context::targeting::Verdict::Matched
        };
        assert!(applies("Account Compromise Runbook (demo)"));
        assert!(!applies("Malware Containment SOP (demo)"));
        assert!(!applies("SSH Brute Force SOP (demo)"));
        for w in workflows().as_array().unwrap() {
            assert!(w["name"].as_str().unwrap().ends_with("(demo)"));
        }
        for (source, file, body) in DEMO_ALERTS {
            assert!(serde_json::from_str::<Value>(body).is_ok(), "{source}: {file}");
        }
    }
}
