//! Reader for the census CSV in both forms users meet: the UCI originals (`adult.data`,
//! `adult.test` with its `|1x3 Cross validator` first line and labels ending in `.`) and Cloud ML
//! Engine's copies (`adult.data.csv`, `adult.test.csv`, optionally with a header line).

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::schema::{CATEGORICAL, CSV_COLUMNS, LABELS, NUMERIC};
use crate::storage::Storage;

/// One labelled example. Categorical values are trimmed; numbers are the integers of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct CensusRow {
    pub categorical: [String; CATEGORICAL.len()],
    pub numeric: [i64; NUMERIC.len()],
    /// 1 for `>50K`, 0 for `<=50K`.
    pub label: u8,
}

/// Reads and parses every file (local paths or storage URIs), in order.
pub fn read_files(storage: &Storage, uris: &[String]) -> Result<Vec<CensusRow>> {
    let mut rows = Vec::new();
    for uri in uris {
        let bytes = storage.read(uri)?;
        let text = String::from_utf8(bytes).with_context(|| format!("{uri} is not UTF-8 text"))?;
        rows.extend(parse(uri, &text)?);
    }
    Ok(rows)
}

/// Reads and parses local files, in order.
pub fn read_local_files<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<CensusRow>> {
    let mut rows = Vec::new();
    for path in paths {
        let name = path.as_ref().display().to_string();
        let text = std::fs::read_to_string(path.as_ref())
            .with_context(|| format!("cannot read {name}"))?;
        rows.extend(parse(&name, &text)?);
    }
    Ok(rows)
}

/// Parses one file's text; `name` is used in error messages. Blank lines, a `|` comment line and a
/// header line are skipped; anything else that is not a valid row is an error naming the line.
pub fn parse(name: &str, text: &str) -> Result<Vec<CensusRow>> {
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('|') {
            continue;
        }
        if rows.is_empty() && line.starts_with("age,") {
            continue;
        }
        let row = parse_row(line).with_context(|| format!("{name}:{line_no}: malformed row"))?;
        rows.push(row);
    }
    if rows.is_empty() {
        bail!("{name}: no census rows");
    }
    Ok(rows)
}

/// The whitespace around a number that the CSV model's graph skips (its string-to-integer cast
/// reads as C's `strtoll`): ASCII only, so a row the check passes never fails the run.
fn number_text(value: &str) -> &str {
    value.trim_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c'])
}

/// The text of a categorical value as the exported graph reads it: its whitespace split
/// separates words at spaces only, so only spaces are trimmed (a tab stays part of the value,
/// here as there).
pub fn category_text(value: &str) -> &str {
    value.trim_matches(' ')
}

/// Checks a census file row as a CSV model takes it: the 14 feature columns (a 15th, the income
/// label, may follow), the numeric ones whole numbers. The error names the field.
pub fn check_features(line: &str) -> std::result::Result<(), String> {
    let fields: Vec<&str> = line.split(',').collect();
    let n = fields.len();
    if n != CSV_COLUMNS.len() - 1 && n != CSV_COLUMNS.len() {
        return Err(format!(
            "a census row has {} comma-separated fields (a 15th, the income label, may follow), this one has {n}",
            CSV_COLUMNS.len() - 1
        ));
    }
    for (i, (name, value)) in CSV_COLUMNS.iter().zip(&fields).enumerate() {
        let numeric = NUMERIC.contains(name) || *name == "fnlwgt";
        if numeric && number_text(value).parse::<i64>().is_err() {
            return Err(format!(
                "field {} ({name}) must be a whole number, got {:?}",
                i + 1,
                number_text(value)
            ));
        }
    }
    Ok(())
}

fn parse_row(line: &str) -> Result<CensusRow> {
    let fields: Vec<&str> = line.split(',').map(category_text).collect();
    if fields.len() != CSV_COLUMNS.len() {
        bail!(
            "expected {} comma-separated fields, found {}",
            CSV_COLUMNS.len(),
            fields.len()
        );
    }
    let field = |name: &str| -> &str {
        let i = CSV_COLUMNS
            .iter()
            .position(|c| *c == name)
            .expect("schema column");
        fields[i]
    };
    let mut numeric = [0i64; NUMERIC.len()];
    for (slot, name) in numeric.iter_mut().zip(NUMERIC) {
        let value = number_text(field(name));
        *slot = value
            .parse::<i64>()
            .with_context(|| format!("{name}: {value:?} is not an integer"))?;
    }
    let categorical = CATEGORICAL.map(|name| field(name).to_string());
    if let Some(name) = CATEGORICAL
        .iter()
        .zip(&categorical)
        .find_map(|(name, v)| v.is_empty().then_some(name))
    {
        bail!("{name}: empty value");
    }
    let raw_label = field("income_bracket");
    let label = raw_label.strip_suffix('.').unwrap_or(raw_label);
    let label = match LABELS.iter().position(|l| *l == label) {
        Some(i) => i as u8,
        None => bail!("income_bracket: {raw_label:?} is neither <=50K nor >50K"),
    };
    Ok(CensusRow {
        categorical,
        numeric,
        label,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_rows_are_checked_field_by_field() {
        let row = "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States";
        assert!(check_features(row).is_ok());
        assert!(check_features(&format!("{row}, <=50K")).is_ok());
        let e = check_features("39, State-gov").unwrap_err();
        assert!(e.contains("this one has 2"), "{e}");
        let e = check_features(&row.replace("39,", "forty,")).unwrap_err();
        assert!(
            e.contains("field 1 (age) must be a whole number, got \"forty\""),
            "{e}"
        );
    }

    const UCI_TEST: &str = "|1x3 Cross validator\n\
        25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, Male, 0, 0, 40, United-States, <=50K.\n\
        38, Private, 89814, HS-grad, 9, Married-civ-spouse, Farming-fishing, Husband, White, Male, 0, 0, 50, United-States, >50K.\n\n\n";

    #[test]
    fn reads_uci_test_file_form() {
        let rows = parse("adult.test", UCI_TEST).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].categorical[0], "Private");
        assert_eq!(rows[0].numeric, [25, 7, 0, 0, 40]);
        assert_eq!(rows[0].label, 0);
        assert_eq!(rows[1].label, 1);
    }

    #[test]
    fn reads_cloud_ml_csv_with_header() {
        let text = "age,workclass,fnlwgt,education,education_num,marital_status,occupation,relationship,race,gender,capital_gain,capital_loss,hours_per_week,native_country,income_bracket\n\
            39,State-gov,77516,Bachelors,13,Never-married,Adm-clerical,Not-in-family,White,Male,2174,0,40,United-States,<=50K\n";
        let rows = parse("adult.data.csv", text).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].numeric[2], 2174);
        assert_eq!(rows[0].categorical[7], "United-States");
    }

    #[test]
    fn malformed_rows_name_file_and_line() {
        let text = "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K\n\
            40, State-gov, 77516, Bachelors\n";
        let err = format!("{:#}", parse("f.csv", text).unwrap_err());
        assert!(err.contains("f.csv:2"), "{err}");
        assert!(err.contains("expected 15"), "{err}");

        let text = "x, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K\n";
        let err = format!("{:#}", parse("g.csv", text).unwrap_err());
        assert!(err.contains("g.csv:1") && err.contains("age"), "{err}");

        let text = "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, maybe\n";
        let err = format!("{:#}", parse("h.csv", text).unwrap_err());
        assert!(
            err.contains("h.csv:1") && err.contains("income_bracket"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_file_is_an_error() {
        assert!(parse("empty.csv", "\n\n").is_err());
    }
}
