//! Device posture: the organization's requirements, which signals a device fails, and the
//! decisions that record a change of either — with the `posture.violation` /
//! `posture.restored` transitions it causes, in the same append, so compliance in the log
//! never lags the signals it follows from.

use events::Expected;
use events::event::{
    OsMinimum, PostureConfigured, PostureReported, PostureRequirements, PostureRestored,
    PostureViolation, Signals,
};
use events::stream::Stream;
use projections::OrgView;
use projections::devices::Device;

use super::Rejection;
use super::decision::Decision;
use crate::policy::Version;

/// The signal names, as events, the API and the policy file spell them.
pub const SIGNALS: [&str; 5] = [
    "min_os_version",
    "min_client_version",
    "disk_encrypted",
    "firewall",
    "screen_lock",
];

/// Checks requirements sent by a client: known action, parseable versions, one minimum per OS.
pub fn validate(r: &PostureRequirements) -> Result<(), Rejection> {
    if !matches!(r.action.as_str(), "block" | "warn") {
        return Err(Rejection::Invalid(format!(
            "action '{}' is not one of block, warn",
            crate::domain::text::echo(&r.action)
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for OsMinimum { os, version } in &r.min_os_version {
        let valid_os = !os.is_empty()
            && os.len() <= 32
            && os
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid_os {
            return Err(Rejection::Invalid(format!(
                "min_os_version: '{}' is not an OS name (lowercase letters and digits, e.g. linux, macos, windows)",
                crate::domain::text::echo(os)
            )));
        }
        if !seen.insert(os) {
            return Err(Rejection::Invalid(format!(
                "min_os_version: '{os}' is given twice"
            )));
        }
        check_version(&format!("min_os_version.{os}"), version)?;
    }
    if let Some(v) = &r.min_client_version {
        check_version("min_client_version", v)?;
    }
    Ok(())
}

fn check_version(field: &str, v: &str) -> Result<(), Rejection> {
    if v.len() > 32 || Version::parse(v).is_none() {
        return Err(Rejection::Invalid(format!(
            "{field}: '{}' is not a version like 14, 6.1 or 1.4.0",
            crate::domain::text::echo(v)
        )));
    }
    Ok(())
}

/// The signals `device` fails under `r`, given what it reported (`None`: nothing yet, so every
/// requirement fails: fail closed). Versions compare numerically, part by part.
pub fn failing(
    r: &PostureRequirements,
    device: &Device,
    reported: Option<&Signals>,
) -> Vec<String> {
    let Some(s) = reported else {
        return required(r);
    };
    let at_least = |have: Option<&str>, min: &str| matches!((have.and_then(Version::parse), Version::parse(min)), (Some(h), Some(m)) if h >= m);
    let os = device.os.to_lowercase();
    let os_version = s.os_version.as_deref().unwrap_or(&device.os_version);
    let mut out = Vec::new();
    if let Some(min) = r.min_os_version.iter().find(|m| m.os == os)
        && !at_least(Some(os_version), &min.version)
    {
        out.push(SIGNALS[0].to_owned());
    }
    if let Some(min) = &r.min_client_version
        && !at_least(s.client_version.as_deref(), min)
    {
        out.push(SIGNALS[1].to_owned());
    }
    for (i, (need, have)) in [
        (r.disk_encrypted, s.disk_encrypted),
        (r.firewall, s.firewall),
        (r.screen_lock, s.screen_lock),
    ]
    .into_iter()
    .enumerate()
    {
        if need && have != Some(true) {
            out.push(SIGNALS[2 + i].to_owned());
        }
    }
    out
}

/// Every signal `r` requires at all.
fn required(r: &PostureRequirements) -> Vec<String> {
    let mut out = Vec::new();
    if !r.min_os_version.is_empty() {
        out.push(SIGNALS[0].to_owned());
    }
    if r.min_client_version.is_some() {
        out.push(SIGNALS[1].to_owned());
    }
    for (i, need) in [r.disk_encrypted, r.firewall, r.screen_lock]
        .into_iter()
        .enumerate()
    {
        if need {
            out.push(SIGNALS[2 + i].to_owned());
        }
    }
    out
}

fn expect(org: OrgView<'_>) -> Expected {
    org.posture()
        .revision
        .map_or(Expected::NoStream, Expected::Exact)
}

/// The transition (if any) of `device` from its recorded compliance to `now_failing`.
fn transition(
    decision: Decision,
    org: OrgView<'_>,
    device: &Device,
    now_failing: Vec<String>,
    action: &str,
) -> Decision {
    let stream = Stream::posture(org.id());
    let was = org
        .device_posture(&device.id)
        .map(|p| p.failing.clone())
        .unwrap_or_default();
    let reported = org
        .device_posture(&device.id)
        .is_some_and(|p| p.signals.is_some());
    if now_failing == was {
        return decision;
    }
    if now_failing.is_empty() {
        // Never recorded as failing (no report yet): nothing to restore.
        if was.is_empty() || !reported {
            return decision;
        }
        return decision.event(
            stream,
            PostureRestored {
                device_id: device.id.clone(),
            },
        );
    }
    decision.event(
        stream,
        PostureViolation {
            device_id: device.id.clone(),
            failing: now_failing,
            action: action.to_owned(),
        },
    )
}

/// `PUT /posture/config`: new requirements, and every reporting device whose compliance they
/// change. Devices that never reported are judged on their first report.
pub fn configure(org: OrgView<'_>, r: PostureRequirements) -> Result<Decision, Rejection> {
    validate(&r)?;
    if org.posture().requirements.as_ref() == Some(&r) {
        return Ok(Decision::none());
    }
    let stream = Stream::posture(org.id());
    let mut d = Decision::none().expect(stream.clone(), expect(org)).event(
        stream,
        PostureConfigured {
            org_id: org.id().to_owned(),
            requirements: r.clone(),
        },
    );
    for device in org.devices() {
        let Some(p) = org.device_posture(&device.id) else {
            continue;
        };
        let Some(s) = &p.signals else { continue };
        let now = failing(&r, device, Some(s));
        d = transition(d, org, device, now, &r.action);
    }
    Ok(d)
}

/// What the decision for a configuration would do, without the event: the devices that would
/// be in violation under `r`, each with the signals it fails (for `dry_run=true`).
pub fn would_fail<'a>(org: OrgView<'a>, r: &PostureRequirements) -> Vec<(&'a Device, Vec<String>)> {
    org.devices()
        .filter_map(|d| {
            let reported = org.device_posture(&d.id).and_then(|p| p.signals.as_ref());
            let f = failing(r, d, reported);
            (!f.is_empty()).then_some((d, f))
        })
        .collect()
}

/// Devices reported signals that differ from the recorded ones (the posture worker): one
/// append for all of them. Devices gone since, or whose signals are already recorded, are
/// skipped.
pub fn report(org: OrgView<'_>, reports: &[(String, Signals)]) -> Result<Decision, Rejection> {
    let stream = Stream::posture(org.id());
    let mut d = Decision::none();
    for (device_id, signals) in reports {
        let Some(device) = org.live_device(device_id) else {
            continue;
        };
        let recorded = org
            .device_posture(device_id)
            .and_then(|p| p.signals.as_ref());
        if recorded == Some(signals) {
            continue;
        }
        d = d.event(
            stream.clone(),
            PostureReported {
                device_id: device_id.clone(),
                signals: signals.clone(),
            },
        );
        let Some(r) = &org.posture().requirements else {
            continue;
        };
        let now = failing(r, device, Some(signals));
        // The first report of a failing device is a violation though nothing was recorded.
        if recorded.is_none() && !now.is_empty() {
            d = d.event(
                stream.clone(),
                PostureViolation {
                    device_id: device_id.clone(),
                    failing: now,
                    action: r.action.clone(),
                },
            );
        } else {
            d = transition(d, org, device, now, &r.action);
        }
    }
    if d.is_empty() {
        return Ok(d);
    }
    Ok(d.expect(stream, expect(org)))
}
