//! `quickztna audit-log export`: the audit log's pages, oldest first, streamed into a file.
//!
//! Each page is written as soon as it arrives while the next one is already being fetched, so
//! memory stays at about two pages whatever the export's size. Events are written byte for
//! byte as the server sent them. A dropped connection or a restarting server is retried with
//! the same cursor (pages are written only whole, so the file never holds half a page or a
//! page twice); 429 and 503 wait for `Retry-After` ([`Client`]). The file is written under a
//! temporary name beside the output and renamed over it only when complete.
//!
//! Formats:
//! - `json`: `{"org_id", "since", "until", "items": [event, …], "checkpoint"}`, one event a
//!   line inside `items`.
//! - `jsonl`: one event a line, then `{"org_id", "since", "until", "checkpoint"}`.
//!
//! Without `--event-type` the events carry their chain links and `checkpoint` is the server's
//! signed organization checkpoint of the last event, so `audit-log verify --export` can check
//! the file. With it, the events are not a contiguous run, have no links, and `checkpoint` is
//! null.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use events::OrgCheckpoint;
use flate2::write::GzEncoder;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::ExportArgs;
use crate::audit::chain::{ChainLink, parse_hash};
use crate::cli::CliError;
use crate::cli::client::{Client, Failure, encode};

/// The API's largest page.
const PAGE: u32 = 200;
/// Consecutive failed attempts at one page before giving up (about three minutes of backoff).
const MAX_RESUMES: u32 = 24;
const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub async fn run(client: &Client, args: ExportArgs) -> Result<(), CliError> {
    // The log's clock counts microseconds.
    let until = args.until.unwrap_or_else(|| {
        jiff::Timestamp::from_microsecond(jiff::Timestamp::now().as_microsecond())
            .expect("now is a valid time")
    });
    if until <= args.since {
        return Err(CliError::new("--until must be after --since"));
    }
    let jsonl = match args.format.as_deref() {
        Some(f) => f == "jsonl",
        None => is_jsonl_name(&args.output),
    };
    let chained = args.event_type.is_none();
    if !chained {
        eprintln!(
            "note: an export filtered by --event-type has no chain links and no checkpoint; it \
             cannot be verified with `audit-log verify --export`"
        );
    }
    let mut base = format!(
        "/api/v1/audit-log?sort=time:asc&limit={PAGE}&since={}&until={}",
        encode(&args.since.to_string()),
        encode(&until.to_string()),
    );
    match &args.event_type {
        None => base.push_str("&chain=true"),
        Some(t) => base.push_str(&format!("&event_type={}", encode(t))),
    }
    let progress = progress_bar();
    let mut writer = Writer::new(Output::create(&args.output)?);
    let mut format = Format { jsonl, written: 0 };
    let mut header = Header {
        org_id: None,
        since: args.since.to_string(),
        until: until.to_string(),
    };
    let mut run = Run::default();

    let mut next = Some(spawn_fetch(client, base.clone()));
    while let Some(fetch) = next.take() {
        let bytes = fetch
            .await
            .map_err(|e| CliError::new(format!("fetching a page: {e}")))??;
        let page: Page<'_> = serde_json::from_slice(&bytes)
            .map_err(|e| CliError::new(format!("the server sent an invalid page: {e}")))?;
        // The next page downloads while this one is checked, formatted and written.
        if let Some(cursor) = &page.next_cursor {
            next = Some(spawn_fetch(
                client,
                format!("{base}&cursor={}", encode(cursor)),
            ));
        }
        let mut chunk = Vec::with_capacity(bytes.len());
        for raw in page.items {
            let event: EventHead = serde_json::from_str(raw.get())
                .map_err(|e| CliError::new(format!("the server sent an invalid event: {e}")))?;
            run.check(&event, chained)?;
            if header.org_id.is_none() {
                header.org_id = Some(event.org_id.clone());
                format.start(&header, &mut chunk);
            }
            format.event(raw.get(), &mut chunk);
            progress.set_message(event.time);
        }
        writer.write(chunk).await?;
        progress.set_position(run.count);
    }

    let checkpoint = match (&run.last, chained) {
        (Some((id, hash)), true) => {
            Some(fetch_checkpoint(client, header.org_id.as_deref(), *id, *hash).await?)
        }
        _ => None,
    };
    let mut chunk = Vec::new();
    if header.org_id.is_none() {
        // Nothing in the window: the header still says whose log it is.
        header.org_id = Some(whose_log(client).await?);
        format.start(&header, &mut chunk);
    }
    format.end(&header, checkpoint.as_ref(), &mut chunk);
    writer.write(chunk).await?;
    let out = writer.into_output().await?;
    let path = args.output.clone();
    tokio::task::spawn_blocking(move || out.finish(&path))
        .await
        .map_err(|e| CliError::new(e.to_string()))??;
    progress.finish_and_clear();
    if std::io::stderr().is_terminal() {
        let ids = match (run.first, &run.last) {
            (Some(a), Some((b, _))) => format!(" (ids {a} to {b})"),
            _ => String::new(),
        };
        eprintln!(
            "Exported {} events{ids} to {}",
            run.count,
            args.output.display()
        );
    }
    Ok(())
}

/// What the export checks of each event as it goes: that a chained run is contiguous, so a
/// server bug shows here and not later in an auditor's hands.
#[derive(Default)]
struct Run {
    count: u64,
    first: Option<u64>,
    /// The id and chain hash of the last event written.
    last: Option<(u64, [u8; 32])>,
}

impl Run {
    fn check(&mut self, event: &EventHead, chained: bool) -> Result<(), CliError> {
        self.count += 1;
        self.first.get_or_insert(event.id);
        if !chained {
            return Ok(());
        }
        let link = event.chain.as_ref().ok_or_else(|| {
            CliError::new(format!("event {} came without its chain link", event.id))
        })?;
        let (Some(previous), Some(hash)) = (parse_hash(&link.previous), parse_hash(&link.hash))
        else {
            return Err(CliError::new(format!(
                "event {} has a malformed chain link",
                event.id
            )));
        };
        if let Some((last_id, last_hash)) = self.last
            && (last_id.checked_add(1) != Some(event.id) || previous != last_hash)
        {
            return Err(CliError::new(format!(
                "the server sent event {} after event {last_id}, not its successor; nothing \
                 was written to the output",
                event.id
            )));
        }
        self.last = Some((event.id, hash));
        Ok(())
    }
}

/// The fields of a page the export reads; the events stay raw.
#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    items: Vec<&'a RawValue>,
    next_cursor: Option<String>,
}

/// The fields of an event the export reads.
#[derive(Deserialize)]
struct EventHead {
    id: u64,
    org_id: String,
    time: String,
    #[serde(default)]
    chain: Option<ChainLink>,
}

#[derive(serde::Serialize)]
struct Header {
    org_id: Option<String>,
    since: String,
    until: String,
}

fn spawn_fetch(
    client: &Client,
    path: String,
) -> tokio::task::JoinHandle<Result<Vec<u8>, CliError>> {
    let client = client.clone();
    tokio::spawn(async move { fetch_resuming(&client, &path).await })
}

/// GETs `path`, retrying with backoff while the server cannot be reached or its proxy says so
/// (502, 504), which covers a restart and a dropped connection.
async fn fetch_resuming(client: &Client, path: &str) -> Result<Vec<u8>, CliError> {
    let mut backoff = Duration::from_millis(250);
    let mut attempt = 0;
    loop {
        match client.get_bytes(path).await {
            Ok(bytes) => return Ok(bytes),
            Err(Failure::Transport(message))
            | Err(Failure::Answered(
                StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT,
                crate::cli::CliError { message, .. },
            )) if attempt < MAX_RESUMES => {
                attempt += 1;
                tracing::warn!(attempt, %message, "retrying the same page");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(other) => return Err(other.into_error()),
        }
    }
}

/// The signed checkpoint of event `id`, checked against what was exported.
async fn fetch_checkpoint(
    client: &Client,
    org_id: Option<&str>,
    id: u64,
    hash: [u8; 32],
) -> Result<OrgCheckpoint, CliError> {
    let bytes = fetch_resuming(client, &format!("/api/v1/audit-log/checkpoint?id={id}")).await?;
    let cp: OrgCheckpoint = serde_json::from_slice(&bytes)
        .map_err(|e| CliError::new(format!("the server sent an invalid checkpoint: {e}")))?;
    if cp.id != id || cp.hash != hash || Some(cp.org_id.as_str()) != org_id {
        return Err(CliError::new(format!(
            "the server's checkpoint of event {id} does not match the exported events"
        )));
    }
    cp.verify(None).map_err(CliError::new)?;
    Ok(cp)
}

/// The organization of the token, from its latest checkpoint.
async fn whose_log(client: &Client) -> Result<String, CliError> {
    let bytes = fetch_resuming(client, "/api/v1/audit-log/checkpoint").await?;
    let cp: OrgCheckpoint = serde_json::from_slice(&bytes)
        .map_err(|e| CliError::new(format!("the server sent an invalid checkpoint: {e}")))?;
    Ok(cp.org_id)
}

/// A spinner on a terminal: how many events, how fast, and the time of the latest. Nothing
/// in a pipe or a log file.
fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {human_pos} events exported ({per_sec}, {elapsed}), up to {msg}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// `x.jsonl` or `x.jsonl.gz`.
pub fn is_jsonl_name(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    name.ends_with(".jsonl") || name.ends_with(".ndjson")
}

fn is_gzip_name(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// The file being written: a temporary file beside the output, gzipped or not.
struct Output {
    tmp: tempfile::NamedTempFile,
    sink: Sink,
}

enum Sink {
    Plain(BufWriter<std::fs::File>),
    Gzip(GzEncoder<BufWriter<std::fs::File>>),
}

impl Output {
    fn create(path: &Path) -> Result<Output, CliError> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(&dir)
            .map_err(|e| io_error(&dir, e))?;
        let file = tmp.reopen().map_err(|e| io_error(tmp.path(), e))?;
        let buffered = BufWriter::with_capacity(256 * 1024, file);
        let sink = if is_gzip_name(path) {
            Sink::Gzip(GzEncoder::new(buffered, flate2::Compression::default()))
        } else {
            Sink::Plain(buffered)
        };
        Ok(Output { tmp, sink })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        let result = match &mut self.sink {
            Sink::Plain(w) => w.write_all(bytes),
            Sink::Gzip(w) => w.write_all(bytes),
        };
        result.map_err(|e| io_error(self.tmp.path(), e))
    }

    /// Flushes, syncs, and renames the file into place.
    fn finish(self, path: &Path) -> Result<(), CliError> {
        let tmp_path = self.tmp.path().to_path_buf();
        let buffered = match self.sink {
            Sink::Plain(w) => Ok(w),
            Sink::Gzip(w) => w.finish(),
        }
        .map_err(|e| io_error(&tmp_path, e))?;
        let file = buffered
            .into_inner()
            .map_err(|e| io_error(&tmp_path, e.into_error()))?;
        file.sync_all().map_err(|e| io_error(&tmp_path, e))?;
        self.tmp
            .persist(path)
            .map_err(|e| io_error(path, e.error))?;
        if let Some(dir) = path.parent() {
            let _ = events::durable::sync_dir(dir);
        }
        Ok(())
    }
}

/// Writes on a blocking thread, one page behind: compressing page N overlaps with fetching
/// and checking page N + 1, and at most one page waits in memory.
struct Writer {
    out: Option<Output>,
    pending: Option<tokio::task::JoinHandle<(Output, Result<(), CliError>)>>,
}

impl Writer {
    fn new(out: Output) -> Writer {
        Writer {
            out: Some(out),
            pending: None,
        }
    }

    async fn settle(&mut self) -> Result<(), CliError> {
        if let Some(pending) = self.pending.take() {
            let (out, result) = pending
                .await
                .map_err(|e| CliError::new(format!("writing the export: {e}")))?;
            self.out = Some(out);
            result?;
        }
        Ok(())
    }

    async fn write(&mut self, chunk: Vec<u8>) -> Result<(), CliError> {
        self.settle().await?;
        let mut out = self.out.take().expect("settled");
        self.pending = Some(tokio::task::spawn_blocking(move || {
            let result = out.write(&chunk);
            (out, result)
        }));
        Ok(())
    }

    async fn into_output(mut self) -> Result<Output, CliError> {
        self.settle().await?;
        Ok(self.out.take().expect("settled"))
    }
}

/// The bytes of each format.
struct Format {
    jsonl: bool,
    /// Events formatted so far (json needs a comma before all but the first).
    written: u64,
}

impl Format {
    /// The json format's opening, once the organization is known.
    fn start(&self, header: &Header, out: &mut Vec<u8>) {
        if self.jsonl {
            return;
        }
        let head = serde_json::to_string(header).expect("a header serializes");
        // Without the closing brace: `items` and `checkpoint` follow.
        out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
        out.extend_from_slice(b",\"items\":[\n");
    }

    fn event(&mut self, raw: &str, out: &mut Vec<u8>) {
        if !self.jsonl && self.written > 0 {
            out.extend_from_slice(b",\n");
        }
        if raw.contains('\n') {
            // Only a server that pretty-printed would send this; a line must stay one event.
            let value: serde_json::Value = serde_json::from_str(raw).expect("already parsed");
            out.extend_from_slice(value.to_string().as_bytes());
        } else {
            out.extend_from_slice(raw.as_bytes());
        }
        if self.jsonl {
            out.push(b'\n');
        }
        self.written += 1;
    }

    /// jsonl's trailer line, or the end of the json object.
    fn end(&self, header: &Header, checkpoint: Option<&OrgCheckpoint>, out: &mut Vec<u8>) {
        let checkpoint = serde_json::to_string(&checkpoint).expect("a checkpoint serializes");
        if self.jsonl {
            let trailer = serde_json::to_string(header).expect("a header serializes");
            out.extend_from_slice(&trailer.as_bytes()[..trailer.len() - 1]);
            out.extend_from_slice(format!(",\"checkpoint\":{checkpoint}}}\n").as_bytes());
        } else {
            let sep = if self.written > 0 { "\n" } else { "" };
            out.extend_from_slice(format!("{sep}],\"checkpoint\":{checkpoint}}}\n").as_bytes());
        }
    }
}

fn io_error(path: &Path, e: std::io::Error) -> CliError {
    CliError::new(format!("{}: {e}", path.display()))
}
