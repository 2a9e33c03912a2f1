//! `${VAR}` and `${VAR:-default}` in pipeline files, from the environment.
//!
//! Interpolation runs on the text before YAML parsing, as shipped pipelines
//! put endpoints (`${TWINFLOW_MQTT_URL:-mqtt://127.0.0.1:1883}`) in places
//! whose type is a number or a URL. `$$` is a literal `$`. A substituted value
//! must not contain a newline, so line numbers in later errors stay exact.

/// A problem found while interpolating, with its 1-based position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolationError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Replaces every `${...}` using `lookup`; collects every problem.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<InterpolationError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        let mut col = 1;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            col += rest[..pos].chars().count();
            let after = &rest[pos + 1..];
            if let Some(stripped) = after.strip_prefix('$') {
                out.push('$');
                rest = stripped;
                col += 2;
                continue;
            }
            let Some(body_and_more) = after.strip_prefix('{') else {
                out.push('$');
                rest = after;
                col += 1;
                continue;
            };
            let Some(end) = body_and_more.find('}') else {
                errors.push(InterpolationError {
                    line: lineno + 1,
                    column: col,
                    message: "unterminated `${`: expected `}`".into(),
                });
                out.push_str(&rest[pos..]);
                rest = "";
                break;
            };
            let body = &body_and_more[..end];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            let valid_name = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid_name {
                errors.push(InterpolationError {
                    line: lineno + 1,
                    column: col,
                    message: format!("invalid variable name `{name}` in `${{{body}}}`"),
                });
            } else {
                match lookup(name).or_else(|| default.map(str::to_string)) {
                    Some(v) if v.contains('\n') => errors.push(InterpolationError {
                        line: lineno + 1,
                        column: col,
                        message: format!("environment variable {name} contains a newline"),
                    }),
                    Some(v) => out.push_str(&v),
                    None => errors.push(InterpolationError {
                        line: lineno + 1,
                        column: col,
                        message: format!(
                            "environment variable {name} is not set and `${{{name}}}` has no default (write `${{{name}:-value}}`)"
                        ),
                    }),
                }
            }
            col += body.chars().count() + 3;
            rest = &body_and_more[end + 1..];
        }
        out.push_str(rest);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("10.0.0.5".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_and_defaults() {
        let s = interpolate(
            "a: ${HOST}\nb: ${PORT:-1883}\nc: ${EMPTY:-x}\nd: $$5 $x\n",
            env,
        )
        .unwrap();
        assert_eq!(s, "a: 10.0.0.5\nb: 1883\nc: \nd: $5 $x\n");
    }

    #[test]
    fn reports_every_missing_variable_with_position() {
        let errs =
            interpolate("a: 1\nb: ${NOPE}\nc:  ${ALSO_NOPE} ${bad-name}\n", env).unwrap_err();
        assert_eq!(errs.len(), 3);
        assert_eq!((errs[0].line, errs[0].column), (2, 4));
        assert!(errs[0].message.contains("NOPE"));
        assert_eq!((errs[1].line, errs[1].column), (3, 5));
        assert!(errs[2].message.contains("invalid variable name"));
    }

    #[test]
    fn unterminated_is_an_error() {
        let errs = interpolate("a: ${HOST\n", env).unwrap_err();
        assert!(errs[0].message.contains("unterminated"));
    }
}
