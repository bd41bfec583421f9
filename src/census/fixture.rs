//! A small synthetic census data set, generated deterministically, for tests that must pass
//! without the UCI files. Values come from the real category lists and the label follows a noisy
//! rule of education, hours, capital gain and marital status, so a model can learn it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::schema::{CATEGORICAL, CSV_COLUMNS, LABELS};
use super::CensusRow;

const WORKCLASS: &[&str] = &["Private", "Self-emp-not-inc", "Local-gov", "State-gov", "?"];
const EDUCATION: &[(&str, i64)] = &[
    ("HS-grad", 9),
    ("Some-college", 10),
    ("Bachelors", 13),
    ("Masters", 14),
    ("11th", 7),
    ("Doctorate", 16),
];
const MARITAL: &[&str] = &["Never-married", "Married-civ-spouse", "Divorced"];
const OCCUPATION: &[&str] = &[
    "Adm-clerical",
    "Exec-managerial",
    "Machine-op-inspct",
    "Prof-specialty",
    "Sales",
    "?",
];
const RELATIONSHIP: &[&str] = &["Husband", "Wife", "Not-in-family", "Own-child"];
const RACE: &[&str] = &["White", "Black", "Asian-Pac-Islander", "Other"];
const GENDER: &[&str] = &["Male", "Female"];
const COUNTRY: &[&str] = &["United-States", "Mexico", "India", "Germany"];

/// `n` rows from `seed`.
pub fn rows(n: usize, seed: u64) -> Vec<CensusRow> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            fn pick(rng: &mut ChaCha8Rng, list: &[&'static str]) -> &'static str {
                list[rng.random_range(0..list.len())]
            }
            let (education, education_num) = EDUCATION[rng.random_range(0..EDUCATION.len())];
            let workclass = pick(&mut rng, WORKCLASS);
            let marital = pick(&mut rng, MARITAL);
            let occupation = pick(&mut rng, OCCUPATION);
            let relationship = pick(&mut rng, RELATIONSHIP);
            let race = pick(&mut rng, RACE);
            let gender = pick(&mut rng, GENDER);
            let country = pick(&mut rng, COUNTRY);
            let age: i64 = rng.random_range(17..80);
            let hours: i64 = rng.random_range(10..70);
            let capital_gain: i64 = if rng.random_bool(0.1) {
                rng.random_range(1000..20000)
            } else {
                0
            };
            let capital_loss: i64 = if rng.random_bool(0.05) {
                rng.random_range(500..3000)
            } else {
                0
            };
            let score = (education_num as f64 - 10.0) * 0.5
                + (hours as f64 - 40.0) * 0.05
                + if capital_gain > 0 { 2.0 } else { 0.0 }
                + if marital == "Married-civ-spouse" {
                    1.5
                } else {
                    -1.0
                }
                + rng.random_range(-1.5..1.5);
            CensusRow {
                categorical: [
                    workclass.to_string(),
                    education.to_string(),
                    marital.to_string(),
                    occupation.to_string(),
                    relationship.to_string(),
                    race.to_string(),
                    gender.to_string(),
                    country.to_string(),
                ],
                numeric: [age, education_num, capital_gain, capital_loss, hours],
                label: u8::from(score > 0.5),
            }
        })
        .collect()
}

/// The rows as a UCI file: `, ` separators, and for the test form the `|1x3 Cross validator`
/// first line, labels ending in `.` and a trailing blank line.
pub fn to_uci_csv(rows: &[CensusRow], test_form: bool) -> String {
    let mut out = String::new();
    if test_form {
        out.push_str("|1x3 Cross validator\n");
    }
    for row in rows {
        let fields: Vec<String> = CSV_COLUMNS
            .iter()
            .map(|col| match *col {
                "fnlwgt" => "100000".to_string(),
                "income_bracket" => {
                    let label = LABELS[row.label as usize];
                    if test_form {
                        format!("{label}.")
                    } else {
                        label.to_string()
                    }
                }
                name => match CATEGORICAL.iter().position(|c| *c == name) {
                    Some(c) => row.categorical[c].clone(),
                    None => {
                        row.numeric[super::schema::numeric_index(name).unwrap_or(0)].to_string()
                    }
                },
            })
            .collect();
        out.push_str(&fields.join(", "));
        out.push('\n');
    }
    if test_form {
        out.push('\n');
    }
    out
}

/// One JSON prediction instance per row, as the census sample's `test.json` (categorical values
/// with their leading space, as in the UCI files).
pub fn to_json_instances(rows: &[CensusRow]) -> String {
    let mut out = String::new();
    for row in rows {
        let mut obj = serde_json::Map::new();
        for name in super::schema::INPUTS {
            let value = match super::schema::categorical_index(name) {
                Some(c) => serde_json::Value::from(format!(" {}", row.categorical[c])),
                None => serde_json::Value::from(
                    row.numeric[super::schema::numeric_index(name).unwrap_or(0)],
                ),
            };
            obj.insert(name.to_string(), value);
        }
        out.push_str(&serde_json::Value::Object(obj).to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_round_trips_through_the_csv_reader() {
        let rows = rows(50, 7);
        for test_form in [false, true] {
            let text = to_uci_csv(&rows, test_form);
            let parsed = crate::census::csv::parse("fixture", &text).unwrap();
            assert_eq!(parsed, rows);
        }
        let positives = rows.iter().filter(|r| r.label == 1).count();
        assert!(positives > 5 && positives < 45, "{positives}");
    }
}
