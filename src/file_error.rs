//! Problems in the files people write by hand (scenarios, taper requests, drug-test results), worded
//! the same whatever the format: `FILE line L, key K: what is wrong`.

/// The key a line sets before `column` (1-based): the last `"name":` (JSON) or `name =` (TOML).
fn key_on_line(line: &str, column: usize) -> Option<String> {
    let prefix: String = line.chars().take(column.max(1)).collect();
    if let Some(end) = prefix.rfind("\":") {
        let start = prefix[..end].rfind('"')?;
        return Some(prefix[start + 1..end].to_string());
    }
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
}

fn located(name: &str, text: &str, line: usize, column: usize, message: &str) -> anyhow::Error {
    let key = text.lines().nth(line.saturating_sub(1)).and_then(|l| key_on_line(l, column));
    match key {
        Some(key) => anyhow::anyhow!("{name} line {line}, key {key}: {message}"),
        None => anyhow::anyhow!("{name} line {line}: {message}"),
    }
}

/// A JSON problem of file `name` with contents `text`.
pub fn json(name: &str, text: &str, error: &serde_json::Error) -> anyhow::Error {
    let message = error.to_string();
    let message = message.split(" at line ").next().unwrap_or(&message);
    located(name, text, error.line(), error.column(), message)
}

/// A TOML problem of file `name` with contents `text`.
pub fn toml(name: &str, text: &str, error: &toml::de::Error) -> anyhow::Error {
    let message = error.message().trim_end();
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            located(name, text, line, column, message)
        }
        None => anyhow::anyhow!("{name}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_and_toml_problems_name_the_line_and_key() {
        let text = "{\n  \"prescribed\": [\"morphine\"],\n  \"collected_on\": \"2026-13-45\"\n}";
        let error = serde_json::from_str::<Dates>(text).unwrap_err();
        let message = super::json("u.json", text, &error).to_string();
        assert!(message.starts_with("u.json line 3, key collected_on: "), "{message}");
        let text = "start_on = \"2026-01-05\"\ncollected_on = \"soon\"\n";
        let error = toml::from_str::<Dates>(text).unwrap_err();
        let message = super::toml("t.toml", text, &error).to_string();
        assert!(message.starts_with("t.toml line 2, key collected_on: "), "{message}");
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Dates {
        #[serde(default)]
        prescribed: Vec<String>,
        #[serde(default)]
        start_on: Option<chrono::NaiveDate>,
        collected_on: chrono::NaiveDate,
    }
}
