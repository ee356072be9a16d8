//! Sentiment scoring as a hanzo-node tool: a linear bag-of-words model in logistic form.
//!
//! | function | params | result |
//! |---|---|---|
//! | `analyze` (also `run`) | `{"text", "top_features"?}` | `{"label", "score", "probability", "tokens", "matched", "top_features"}` |
//! | `batch` | `{"texts": [..], "top_features"?}` | one result per text, in order, plus a summary |
//!
//! The model: the text is split into lower-case words and clause breaks; each word found in
//! the embedded weight table ([`lexicon`], about 400 words) adds its weight to the log-odds
//! `score`, after three adjustments:
//!
//! * **negation**: within three words after "not", "never", "no", "without" or an `n't`
//!   contraction (and before the next clause break), a weight counts ×−0.75, so "not good" is
//!   mildly negative and "not bad" mildly positive;
//! * **intensity**: "very", "extremely", ... multiply the next word's weight by 1.5;
//!   "slightly", "somewhat", ... by 0.5;
//! * **contrast**: in a sentence with "but" or "however", what precedes counts half and what
//!   follows 1.5× ("the food was good but the service was awful" is negative).
//!
//! `probability` = σ(score) = P(positive); the label is `positive` at 0.6 and above,
//! `negative` at 0.4 and below, `neutral` between. Words missing from the table are retried
//! without common inflections ("hates" → "hate", "annoyingly" is not guessed).

pub mod lexicon;

use std::collections::BTreeMap;

use hanzo_tool::tool;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Log-odds with no evidence: the model has no prior lean.
const INTERCEPT: f64 = 0.0;
/// A negated word counts this many times its weight: flipped, and weaker than its opposite
/// ("not good" is less negative than "bad").
const NEGATION_FACTOR: f64 = -0.75;
/// How many words after a negator it reaches.
const NEGATION_SCOPE: usize = 3;
const INTENSIFIER_FACTOR: f64 = 1.5;
const DIMINISHER_FACTOR: f64 = 0.5;
/// Cap on stacked modifiers ("really very extremely good").
const MAX_MODIFIER: f64 = 2.25;
const BEFORE_CONTRAST_FACTOR: f64 = 0.5;
const AFTER_CONTRAST_FACTOR: f64 = 1.5;
const POSITIVE_AT: f64 = 0.6;
const NEGATIVE_AT: f64 = 0.4;
const DEFAULT_TOP_FEATURES: usize = 5;

const NEGATORS: &[&str] = &[
    "barely", "cannot", "cant", "hardly", "neither", "never", "no", "nobody", "none", "nor", "not",
    "nothing", "nowhere", "scarcely", "without",
];
const INTENSIFIERS: &[&str] = &[
    "absolutely",
    "completely",
    "deeply",
    "especially",
    "exceptionally",
    "extremely",
    "highly",
    "incredibly",
    "really",
    "so",
    "super",
    "too",
    "totally",
    "truly",
    "utterly",
    "very",
];
const DIMINISHERS: &[&str] = &[
    "fairly",
    "marginally",
    "mildly",
    "partly",
    "rather",
    "slightly",
    "somewhat",
];
const CONTRASTS: &[&str] = &["but", "however"];

/// One piece of a tokenised text.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A word, lower case, typographic apostrophes folded to `'`.
    Word(String),
    /// `,` `;` `:`: ends a negation's reach.
    ClauseBreak,
    /// `.` `!` `?` `…` or a line break: also ends a contrast's reach.
    SentenceBreak,
}

fn tokenize(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let joins_word = matches!(c, '\'' | '\u{2019}' | '-')
            && !word.is_empty()
            && chars.peek().is_some_and(|n| n.is_alphanumeric());
        if c.is_alphanumeric() || joins_word {
            word.extend(c.to_lowercase().map(|c| if c == '\u{2019}' { '\'' } else { c }));
            continue;
        }
        if !word.is_empty() {
            tokens.push(Token::Word(std::mem::take(&mut word)));
        }
        match c {
            ',' | ';' | ':' => tokens.push(Token::ClauseBreak),
            '.' | '!' | '?' | '\u{2026}' | '\n' => tokens.push(Token::SentenceBreak),
            _ => {}
        }
    }
    if !word.is_empty() {
        tokens.push(Token::Word(word));
    }
    tokens
}

fn is_negator(word: &str) -> bool {
    NEGATORS.contains(&word) || word.ends_with("n't")
}

/// The table's entry for a word: the word itself, or, failing that, the word without a
/// common English inflection. Returns the matched table word with its weight.
fn lookup(word: &str) -> Option<(&'static str, f64)> {
    let found = |candidate: &str| lexicon::entry(candidate);
    if let Some(hit) = found(word) {
        return Some(hit);
    }
    let word = word.strip_suffix("'s").unwrap_or(word);
    const INFLECTIONS: &[(&str, &str)] = &[
        ("ies", "y"),
        ("es", ""),
        ("s", ""),
        ("ied", "y"),
        ("ed", ""),
        ("ed", "e"),
        ("ing", ""),
        ("ing", "e"),
    ];
    INFLECTIONS.iter().find_map(|(suffix, replacement)| {
        let stem = word.strip_suffix(suffix)?;
        // Short stems match too much ("sing" → "s").
        if stem.chars().count() < 3 {
            return None;
        }
        found(&format!("{stem}{replacement}"))
    })
}

/// One scored occurrence of a table word.
struct Hit {
    word: &'static str,
    weight: f64,
    negated: bool,
    contribution: f64,
}

/// The model's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    /// P(positive) ≥ 0.6.
    Positive,
    /// P(positive) between 0.4 and 0.6.
    Neutral,
    /// P(positive) ≤ 0.4.
    Negative,
}

/// A table word's total effect on the score.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Feature {
    /// The table word (occurrences of its inflections count as it).
    pub word: String,
    /// Whether these occurrences were under a negation.
    pub negated: bool,
    /// Occurrences.
    pub count: usize,
    /// The word's weight in the table.
    pub weight: f64,
    /// What these occurrences added to the score, after negation, intensity and contrast.
    pub contribution: f64,
}

/// Result of scoring one text.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Sentiment {
    /// `positive`, `neutral` or `negative`.
    pub label: Label,
    /// The log-odds of the text being positive: the intercept plus every contribution.
    pub score: f64,
    /// σ(score): the model's probability that the text is positive.
    pub probability: f64,
    /// Words in the text.
    pub tokens: usize,
    /// Words found in the weight table.
    pub matched: usize,
    /// The features with the largest effect, largest first (ties alphabetical).
    pub top_features: Vec<Feature>,
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Scores one text with the model described in the crate documentation.
pub fn score_text(text: &str, top_features: usize) -> Sentiment {
    let mut hits: Vec<Hit> = Vec::new();
    let mut words = 0;
    let mut negation_left = 0;
    let mut modifier = 1.0;
    // Index of the first hit of the current sentence, and whether a contrast word was seen in
    // it: both reset at each sentence break.
    let mut sentence_start = 0;
    let mut after_contrast = false;

    for token in tokenize(text) {
        let word = match token {
            Token::Word(word) => word,
            Token::ClauseBreak => {
                negation_left = 0;
                modifier = 1.0;
                continue;
            }
            Token::SentenceBreak => {
                negation_left = 0;
                modifier = 1.0;
                sentence_start = hits.len();
                after_contrast = false;
                continue;
            }
        };
        words += 1;
        if is_negator(&word) {
            negation_left = NEGATION_SCOPE;
            continue;
        }
        let negated = negation_left > 0;
        negation_left = negation_left.saturating_sub(1);
        if CONTRASTS.contains(&word.as_str()) {
            for hit in &mut hits[sentence_start..] {
                hit.contribution *= BEFORE_CONTRAST_FACTOR;
            }
            after_contrast = true;
            negation_left = 0;
            continue;
        }
        if INTENSIFIERS.contains(&word.as_str()) {
            modifier = (modifier * INTENSIFIER_FACTOR).min(MAX_MODIFIER);
            continue;
        }
        if DIMINISHERS.contains(&word.as_str()) {
            modifier *= DIMINISHER_FACTOR;
            continue;
        }
        if let Some((table_word, weight)) = lookup(&word) {
            let mut contribution = weight * modifier;
            if negated {
                contribution *= NEGATION_FACTOR;
            }
            if after_contrast {
                contribution *= AFTER_CONTRAST_FACTOR;
            }
            hits.push(Hit {
                word: table_word,
                weight,
                negated,
                contribution,
            });
        }
        // A modifier reaches only the next word.
        modifier = 1.0;
    }

    let score = INTERCEPT + hits.iter().map(|h| h.contribution).sum::<f64>();
    let probability = sigmoid(score);
    let label = if probability >= POSITIVE_AT {
        Label::Positive
    } else if probability <= NEGATIVE_AT {
        Label::Negative
    } else {
        Label::Neutral
    };

    let mut features: BTreeMap<(&str, bool), Feature> = BTreeMap::new();
    for hit in &hits {
        let feature = features
            .entry((hit.word, hit.negated))
            .or_insert_with(|| Feature {
                word: hit.word.to_string(),
                negated: hit.negated,
                count: 0,
                weight: hit.weight,
                contribution: 0.0,
            });
        feature.count += 1;
        feature.contribution += hit.contribution;
    }
    let mut features: Vec<Feature> = features.into_values().collect();
    for feature in &mut features {
        feature.contribution = round4(feature.contribution);
    }
    // The map iterates by (word, negated) and the sort is stable, so ties stay in that order.
    features.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
    features.truncate(top_features);

    Sentiment {
        label,
        score: round4(score),
        probability: round4(probability),
        tokens: words,
        matched: hits.len(),
        top_features: features,
    }
}

/// Params of `analyze`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeParams {
    /// The text to score.
    pub text: String,
    /// How many features to explain the score with (default 5).
    #[serde(default)]
    pub top_features: Option<usize>,
}

/// Scores the sentiment of a text: label, log-odds score, probability of being positive, and
/// the words that weighed most.
#[tool]
pub fn analyze(params: AnalyzeParams) -> Sentiment {
    score_text(&params.text, params.top_features.unwrap_or(DEFAULT_TOP_FEATURES))
}

/// Params of `batch`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchParams {
    /// The texts to score.
    pub texts: Vec<String>,
    /// How many features to explain each score with (default 5).
    #[serde(default)]
    pub top_features: Option<usize>,
}

/// Label counts over a batch.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct BatchSummary {
    /// Number of texts.
    pub count: usize,
    /// Texts labelled positive.
    pub positive: usize,
    /// Texts labelled neutral.
    pub neutral: usize,
    /// Texts labelled negative.
    pub negative: usize,
    /// Mean probability of being positive; null for an empty batch.
    pub mean_probability: Option<f64>,
}

/// Result of `batch`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct BatchResult {
    /// One result per text, in the order given.
    pub results: Vec<Sentiment>,
    /// Totals over all texts.
    pub summary: BatchSummary,
}

/// Scores a list of texts, returning each result in order and a summary of the labels.
#[tool]
pub fn batch(params: BatchParams) -> BatchResult {
    let top = params.top_features.unwrap_or(DEFAULT_TOP_FEATURES);
    let results: Vec<Sentiment> = params.texts.iter().map(|t| score_text(t, top)).collect();
    let count_of = |label| results.iter().filter(|r| r.label == label).count();
    let summary = BatchSummary {
        count: results.len(),
        positive: count_of(Label::Positive),
        neutral: count_of(Label::Neutral),
        negative: count_of(Label::Negative),
        mean_probability: (!results.is_empty())
            .then(|| round4(results.iter().map(|r| r.probability).sum::<f64>() / results.len() as f64)),
    };
    BatchResult { results, summary }
}

hanzo_tool::export!(analyze, batch);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn label(text: &str) -> Label {
        score_text(text, 5).label
    }

    fn score(text: &str) -> f64 {
        score_text(text, 5).score
    }

    #[test]
    fn clear_cases() {
        assert_eq!(
            label("This is an excellent, wonderful product. I love it!"),
            Label::Positive
        );
        assert_eq!(
            label("Terrible service, the food was awful and cold."),
            Label::Negative
        );
        assert_eq!(label("The meeting is at noon in room four."), Label::Neutral);
        assert_eq!(label(""), Label::Neutral);
    }

    #[test]
    fn one_word_is_its_weight() {
        let s = score_text("good", 5);
        assert_eq!(s.score, 1.2);
        assert_eq!(s.probability, round4(sigmoid(1.2)));
        assert_eq!((s.tokens, s.matched), (1, 1));
    }

    #[test]
    fn negation_flips_and_weakens() {
        assert_eq!(score("not good"), round4(1.2 * NEGATION_FACTOR));
        assert_eq!(label("not good"), Label::Negative);
        assert_eq!(label("not bad at all"), Label::Positive);
        assert_eq!(label("I don't like it"), Label::Negative);
        assert_eq!(label("I don’t like it"), Label::Negative);
        // Negation reaches three words, and stops at a clause break.
        assert!(score("not a very good idea") < 0.0);
        assert!(score("not that it matters, good") > 0.0);
        assert!(score("never in a million years was it good") > 0.0);
    }

    #[test]
    fn intensity_modifiers() {
        assert_eq!(score("very good"), round4(1.2 * INTENSIFIER_FACTOR));
        assert_eq!(score("slightly good"), round4(1.2 * DIMINISHER_FACTOR));
        assert_eq!(score("really very extremely good"), round4(1.2 * MAX_MODIFIER));
        // A modifier reaches only the next word.
        assert_eq!(score("very big good"), 1.2);
    }

    #[test]
    fn contrast_favours_the_second_clause() {
        let s = score_text("The food was good but the service was awful.", 5);
        assert_eq!(s.label, Label::Negative);
        assert_eq!(s.score, round4(1.2 * 0.5 - 2.5 * 1.5));
        // The contrast ends with its sentence.
        assert_eq!(score("Good but awful. Good."), round4(0.6 - 3.75 + 1.2));
    }

    #[test]
    fn inflections_fall_back_to_the_table_word() {
        let s = score_text("She hates it and it annoys everyone", 5);
        let words: Vec<&str> = s.top_features.iter().map(|f| f.word.as_str()).collect();
        assert_eq!(words, ["hate"]);
        assert_eq!(lookup("crashes"), Some(("crash", -1.2)));
        assert_eq!(lookup("worries"), Some(("worry", -1.0)));
        assert_eq!(lookup("things"), None);
        assert_eq!(lookup("sing"), None);
    }

    #[test]
    fn features_aggregate_and_sort() {
        let s = score_text("good good not good great. awful", 10);
        let got: Vec<(&str, bool, usize, f64)> = s
            .top_features
            .iter()
            .map(|f| (f.word.as_str(), f.negated, f.count, f.contribution))
            .collect();
        assert_eq!(
            got,
            [
                ("awful", false, 1, -2.5),
                ("good", false, 2, 2.4),
                ("great", true, 1, -1.35),
                ("good", true, 1, -0.9),
            ]
        );
        assert_eq!(score_text("good great", 1).top_features.len(), 1);
        assert!(score_text("good", 0).top_features.is_empty());
    }

    #[test]
    fn tokenizer() {
        assert_eq!(
            tokenize("Top-notch, isn't it? 'Yes'"),
            [
                Token::Word("top-notch".into()),
                Token::ClauseBreak,
                Token::Word("isn't".into()),
                Token::Word("it".into()),
                Token::SentenceBreak,
                Token::Word("yes".into()),
            ]
        );
    }

    #[test]
    fn batch_keeps_order_and_summarises() {
        let out = batch(BatchParams {
            texts: vec![
                "I love it".into(),
                "awful".into(),
                "a chair".into(),
                "great".into(),
            ],
            top_features: Some(1),
        });
        let labels: Vec<Label> = out.results.iter().map(|r| r.label).collect();
        assert_eq!(
            labels,
            [Label::Positive, Label::Negative, Label::Neutral, Label::Positive]
        );
        assert_eq!(
            (
                out.summary.count,
                out.summary.positive,
                out.summary.neutral,
                out.summary.negative
            ),
            (4, 2, 1, 1)
        );
        let empty = batch(BatchParams {
            texts: vec![],
            top_features: None,
        });
        assert_eq!(empty.summary.mean_probability, None);
    }

    #[test]
    fn through_the_tool_interface() {
        let tools = hanzo_tools();
        let run = hanzo_tool::select(tools, Some("run")).unwrap();
        assert_eq!(run.name, "analyze");
        let out: Value = run.call(br#"{"text": "not good"}"#).unwrap();
        assert_eq!(out["label"], "negative");
        assert_eq!(
            out["top_features"][0],
            json!({
                "word": "good", "negated": true, "count": 1, "weight": 1.2, "contribution": -0.9
            })
        );
        let doc = tools[1].schema_document();
        assert_eq!(doc["input"]["required"], json!(["texts"]));
        let labels: Vec<&Value> = doc["output"]["$defs"]["Label"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|variant| &variant["const"])
            .collect();
        assert_eq!(
            labels,
            [&json!("positive"), &json!("neutral"), &json!("negative")]
        );
    }
}
