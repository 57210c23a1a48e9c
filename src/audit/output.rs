//! How `chatprefs audit` prints: a table for people, JSON or CSV for tools.

use std::io::Write;

use super::{AsOf, AuditPage};
use crate::api_types;
use crate::store::audit::{format_instant, AuditEntry};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

const CSV_HEADER: [&str; 17] = [
    "position",
    "eventId",
    "type",
    "appID",
    "client",
    "room",
    "actorKind",
    "actorId",
    "requestId",
    "address",
    "port",
    "userAgent",
    "recordedAt",
    "recordedAtMS",
    "until",
    "untilMS",
    "personalData",
];

fn or_empty(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("")
}

fn csv_record(entry: &AuditEntry) -> [String; 17] {
    [
        entry.position.to_string(),
        entry.event_id.to_string(),
        entry.event_type.clone(),
        entry.app_id.clone(),
        entry.client.clone(),
        or_empty(&entry.room).to_owned(),
        or_empty(&entry.actor.kind).to_owned(),
        or_empty(&entry.actor.id).to_owned(),
        or_empty(&entry.request_id).to_owned(),
        or_empty(&entry.address).to_owned(),
        entry.port.map(|p| p.to_string()).unwrap_or_default(),
        or_empty(&entry.user_agent).to_owned(),
        format_instant(&entry.recorded_at),
        entry.recorded_at.timestamp_millis().to_string(),
        entry.until.as_ref().map(format_instant).unwrap_or_default(),
        entry
            .until
            .map(|until| until.timestamp_millis().to_string())
            .unwrap_or_default(),
        or_empty(&entry.personal_data).to_owned(),
    ]
}

const TABLE_HEADER: [&str; 10] = [
    "POSITION",
    "RECORDED AT (UTC)",
    "TYPE",
    "CLIENT",
    "ROOM",
    "UNTIL (UTC)",
    "ACTOR",
    "FROM",
    "REQUEST ID",
    "USER AGENT",
];

fn table_record(entry: &AuditEntry) -> [String; 10] {
    let from = match (&entry.address, entry.port) {
        (Some(address), Some(port)) if address.contains(':') => format!("[{address}]:{port}"),
        (Some(address), Some(port)) => format!("{address}:{port}"),
        (Some(address), None) => address.clone(),
        (None, _) => match &entry.personal_data {
            Some(removed) => format!("({removed})"),
            None => "-".into(),
        },
    };
    [
        entry.position.to_string(),
        format_instant(&entry.recorded_at),
        entry.event_type.clone(),
        entry.client.clone(),
        entry.room.clone().unwrap_or_else(|| "-".into()),
        entry
            .until
            .as_ref()
            .map_or_else(|| "-".into(), format_instant),
        format!(
            "{}:{}",
            or_empty(&entry.actor.kind),
            or_empty(&entry.actor.id)
        ),
        from,
        entry.request_id.clone().unwrap_or_else(|| "-".into()),
        entry.user_agent.clone().unwrap_or_else(|| "-".into()),
    ]
}

fn write_table<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: Vec<&str>| -> std::io::Result<()> {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        writeln!(out, "{}", padded.join("  ").trim_end())
    };
    line(out, header.to_vec())?;
    for row in rows {
        line(out, row.iter().map(String::as_str).collect())?;
    }
    Ok(())
}

/// The entries as CSV with a header line: the CLI's `--format csv` and the console's
/// download.
pub fn write_csv(out: &mut impl Write, entries: &[AuditEntry]) -> anyhow::Result<()> {
    let mut csv = csv::Writer::from_writer(&mut *out);
    csv.write_record(CSV_HEADER)?;
    for entry in entries {
        csv.write_record(csv_record(entry))?;
    }
    csv.flush()?;
    Ok(())
}

/// Prints a page; a person is told on stderr when nothing matched or more pages follow,
/// so that stdout stays parseable.
pub fn write_page(out: &mut impl Write, format: Format, page: &AuditPage) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let page = api_types::AuditPage::from(page.clone());
            writeln!(out, "{}", serde_json::to_string_pretty(&page)?)?
        }
        Format::Csv => write_csv(out, &page.entries)?,
        Format::Table if page.entries.is_empty() => {}
        Format::Table => {
            let rows: Vec<_> = page.entries.iter().map(table_record).collect();
            write_table(out, TABLE_HEADER, &rows)?;
        }
    }
    if page.entries.is_empty() {
        eprintln!("no events match these filters");
    } else if page.has_more {
        if let Some(next) = page.next {
            eprintln!("more events follow: continue with --after {next}");
        }
    }
    Ok(())
}

/// The head of `chatprefs tail`'s table; nothing for JSON lines.
pub fn write_tail_header(out: &mut impl Write, format: TailFormat) -> std::io::Result<()> {
    match format {
        TailFormat::Table => writeln!(out, "{}", TABLE_HEADER.join("  ")),
        TailFormat::Json => Ok(()),
    }
}

/// One followed event as it arrives: a table row (columns cannot be aligned ahead of
/// events not seen yet) or one JSON object per line.
pub fn write_tail_entry(
    out: &mut impl Write,
    format: TailFormat,
    entry: &AuditEntry,
) -> anyhow::Result<()> {
    match format {
        TailFormat::Table => writeln!(out, "{}", table_record(entry).join("  "))?,
        TailFormat::Json => {
            let entry = api_types::AuditEntry::from(entry.clone());
            writeln!(out, "{}", serde_json::to_string(&entry)?)?
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TailFormat {
    Table,
    /// One JSON object per line.
    Json,
}

/// Prints a user's mutes at an instant.
pub fn write_as_of(out: &mut impl Write, format: Format, as_of: &AsOf) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let as_of = api_types::AsOf::from(as_of.clone());
            writeln!(out, "{}", serde_json::to_string_pretty(&as_of)?)?
        }
        Format::Csv => {
            let mut csv = csv::Writer::from_writer(&mut *out);
            csv.write_record(["room"])?;
            for mute in &as_of.mutes {
                csv.write_record([mute.room.as_str()])?;
            }
            csv.flush()?;
        }
        Format::Table => {
            writeln!(
                out,
                "client {} of app {} at {}:",
                as_of.client,
                as_of.app,
                format_instant(&as_of.at)
            )?;
            for mute in &as_of.mutes {
                writeln!(out, "  {}", mute.room)?;
            }
            if let Some(pause) = &as_of.pause {
                let until = pause
                    .until
                    .as_ref()
                    .map_or("resumed".into(), format_instant);
                writeln!(out, "  (all notifications paused until {until})")?;
            }
        }
    }
    if as_of.mutes.is_empty() {
        eprintln!("no room was muted at that instant");
    }
    Ok(())
}
