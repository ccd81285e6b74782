//! Exec-form detection: a strict JSON array of strings (Go `encoding/json` rules).

/// What the argument text is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JsonForm {
    /// Not a JSON array (or not valid JSON): use the shell/whitespace form.
    NotJson,
    /// The decoded strings, each with the byte range of its literal.
    Strings(Vec<(String, usize, usize)>),
    /// A valid array with a non-string element: a hard error. The range is the
    /// offending element's.
    NonString(usize, usize),
}

pub(crate) const NOT_STRINGS_MESSAGE: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

pub(crate) fn json_array(text: &str) -> JsonForm {
    let leading = text.len() - text.trim_start().len();
    let body = &text[leading..];
    if !body.starts_with('[') {
        return JsonForm::NotJson;
    }
    // serde_json, like Go, accepts only JSON whitespace around the value and rejects
    // trailing text, single quotes and raw control characters.
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(body)
    else {
        return JsonForm::NotJson;
    };
    let ranges = element_ranges(body);
    let mut strings = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let (start, end) = ranges.get(index).map_or((0, body.len()), |&(s, e)| (s, e));
        match item {
            serde_json::Value::String(value) => {
                strings.push((value, leading + start, leading + end))
            }
            _ => return JsonForm::NonString(leading + start, leading + end),
        }
    }
    JsonForm::Strings(strings)
}

/// Byte ranges of the top-level elements of a JSON array already known to be valid.
fn element_ranges(body: &str) -> Vec<(usize, usize)> {
    let bytes = body.as_bytes();
    let mut ranges = Vec::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut element_start: Option<usize> = None;
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                if depth == 1 && element_start.is_none() {
                    element_start = Some(i);
                }
            }
            b'[' | b'{' => {
                if depth == 1 && element_start.is_none() {
                    element_start = Some(i);
                }
                depth += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    if let Some(start) = element_start.take() {
                        ranges.push((start, trimmed_end(bytes, start, i)));
                    }
                    break;
                }
            }
            b',' if depth == 1 => {
                if let Some(start) = element_start.take() {
                    ranges.push((start, trimmed_end(bytes, start, i)));
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => {
                if depth == 1 && element_start.is_none() {
                    element_start = Some(i);
                }
            }
        }
    }
    ranges
}

fn trimmed_end(bytes: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && matches!(bytes.get(end - 1), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_with_ranges() {
        let text = " [ \"a\", \"b\\\"\" ]";
        let JsonForm::Strings(items) = json_array(text) else {
            panic!("not strings");
        };
        assert_eq!(items[0], ("a".to_string(), 3, 6));
        assert_eq!(&text[items[1].1..items[1].2], "\"b\\\"\"");
    }

    #[test]
    fn fallbacks_and_errors() {
        assert_eq!(json_array("['a']"), JsonForm::NotJson);
        assert_eq!(json_array("[\"a\"] x"), JsonForm::NotJson);
        assert_eq!(json_array("["), JsonForm::NotJson);
        assert_eq!(json_array("[1e400]"), JsonForm::NotJson);
        assert_eq!(json_array("[\"a\", 42]"), JsonForm::NonString(6, 8));
        assert_eq!(
            json_array("[\"a\", {\"b\": [1]}]"),
            JsonForm::NonString(6, 16)
        );
    }
}
