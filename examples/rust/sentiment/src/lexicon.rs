//! The model's weight table.
//!
//! The weights were assigned by hand, per word, on a scale from -3 (strongly negative) to +3
//! (strongly positive), the way sentiment lexicons are built; they were not fitted to a data
//! set, so read the scores as a transparent heuristic, not a calibrated probability. One
//! unit of weight is one unit of log-odds: a lone "good" (1.2) gives P(positive) = σ(1.2) ≈ 0.77.

/// `(word, weight)`, sorted by word for binary search; words are lower case.
#[rustfmt::skip] // One entry per line would spread the table over 400 lines.
pub const WEIGHTS: &[(&str, f64)] = &[
    ("abysmal", -2.6), ("accurate", 1.0), ("admire", 1.6), ("adore", 2.3), ("advantage", 0.9),
    ("affordable", 1.0), ("afraid", -1.1), ("agony", -2.0), ("amazing", 2.5), ("angry", -1.8),
    ("annoyed", -1.5), ("annoying", -1.6), ("anxious", -1.1), ("appalling", -2.4),
    ("appreciate", 1.4), ("appreciated", 1.4), ("atrocious", -2.6), ("attentive", 1.2),
    ("avoid", -1.3), ("awesome", 2.4), ("awful", -2.5), ("awfully", -1.5), ("awkward", -0.8),
    ("bad", -1.5), ("badly", -1.5), ("bargain", 1.0), ("beautiful", 1.8), ("beautifully", 1.8),
    ("beloved", 1.8), ("beneficial", 1.2), ("benefit", 1.0), ("best", 2.1), ("better", 1.0),
    ("beware", -1.3), ("bitter", -1.1), ("bland", -1.1), ("blessed", 1.5), ("bored", -1.2),
    ("boring", -1.5), ("bravo", 1.8), ("breathtaking", 2.3), ("brilliant", 2.4), ("broke", -1.2),
    ("broken", -1.6), ("bug", -0.8), ("buggy", -1.5), ("burnt", -1.1), ("calm", 0.8),
    ("cancelled", -0.7), ("celebrate", 1.5), ("celebrated", 1.4), ("charming", 1.5),
    ("cheated", -1.9), ("cheerful", 1.5), ("clean", 0.8), ("clever", 1.2), ("comfortable", 1.1),
    ("complain", -1.1), ("complaint", -1.1), ("complicated", -0.8), ("confused", -1.0),
    ("confusing", -1.2), ("congrats", 1.6), ("congratulations", 1.8), ("convenient", 1.1),
    ("cool", 1.0), ("correct", 0.6), ("cosy", 1.1), ("cozy", 1.1), ("crap", -2.0), ("crash", -1.2),
    ("crashed", -1.3), ("creative", 1.0), ("cruel", -2.0), ("cry", -1.0), ("crying", -1.1),
    ("damaged", -1.4), ("danger", -1.1), ("dangerous", -1.3), ("decent", 0.8), ("defective", -1.8),
    ("delay", -0.8), ("delayed", -0.9), ("delicious", 1.9), ("delighted", 2.0),
    ("delightful", 2.2), ("depressed", -1.7), ("depressing", -1.8), ("despise", -2.4),
    ("destroy", -1.5), ("destroyed", -1.7), ("difficult", -0.8), ("dirty", -1.3),
    ("disappointed", -1.8), ("disappointing", -1.8), ("disappointment", -1.8), ("disaster", -2.3),
    ("disastrous", -2.4), ("disgusted", -2.1), ("disgusting", -2.4), ("dishonest", -1.8),
    ("dislike", -1.5), ("disliked", -1.5), ("dreadful", -2.3), ("dull", -1.2), ("dumb", -1.5),
    ("eager", 0.8), ("easy", 1.0), ("ecstatic", 2.4), ("effective", 1.2), ("efficient", 1.1),
    ("elegant", 1.4), ("embarrassing", -1.4), ("engaging", 1.3), ("enjoy", 1.5),
    ("enjoyable", 1.5), ("enjoyed", 1.5), ("enjoying", 1.5), ("entertaining", 1.4),
    ("enthusiastic", 1.6), ("error", -0.8), ("evil", -2.0), ("excellence", 2.2),
    ("excellent", 2.5), ("exceptional", 2.4), ("excited", 1.6), ("exciting", 1.6),
    ("exhausting", -1.2), ("expensive", -0.8), ("extraordinary", 2.2), ("fabulous", 2.2),
    ("fail", -1.4), ("failed", -1.4), ("failure", -1.6), ("fair", 0.6), ("fake", -1.5),
    ("fantastic", 2.5), ("fantastically", 2.3), ("fascinating", 1.6), ("fast", 0.8),
    ("faulty", -1.6), ("favorite", 1.5), ("favourite", 1.5), ("fear", -1.1), ("filthy", -1.9),
    ("fine", 0.6), ("flawless", 2.4), ("flimsy", -1.3), ("forgettable", -1.1), ("fortunate", 1.2),
    ("fraud", -2.3), ("fresh", 0.8), ("friendly", 1.3), ("frustrated", -1.7),
    ("frustrating", -1.8), ("frustration", -1.7), ("fun", 1.4), ("funny", 1.1), ("furious", -2.3),
    ("garbage", -2.1), ("generous", 1.3), ("genius", 1.8), ("glad", 1.3), ("gladly", 1.2),
    ("glorious", 2.2), ("good", 1.2), ("gorgeous", 1.9), ("grateful", 1.5), ("greasy", -0.9),
    ("great", 1.8), ("grief", -1.7), ("gross", -1.6), ("haha", 0.8), ("handy", 1.0),
    ("happily", 1.6), ("happy", 1.6), ("harmful", -1.5), ("hassle", -1.2), ("hate", -2.4),
    ("hated", -2.4), ("heavenly", 1.8), ("helpful", 1.3), ("hideous", -2.0), ("hilarious", 1.5),
    ("honest", 1.1), ("hope", 0.6), ("hopeful", 1.0), ("hopeless", -1.9), ("horrendous", -2.6),
    ("horrible", -2.5), ("horribly", -2.4), ("horror", -1.6), ("hostile", -1.6), ("hurt", -1.3),
    ("hurtful", -1.6), ("impressed", 1.6), ("impressive", 1.7), ("improve", 0.9),
    ("improved", 1.1), ("improvement", 1.0), ("inadequate", -1.3), ("incompetent", -1.9),
    ("inconvenient", -1.1), ("incorrect", -1.0), ("incredible", 2.2), ("inferior", -1.4),
    ("infuriating", -2.2), ("innovative", 1.2), ("inspired", 1.3), ("inspiring", 1.6),
    ("insulting", -1.9), ("interesting", 0.9), ("intolerable", -2.1), ("intuitive", 1.2),
    ("irritated", -1.5), ("irritating", -1.6), ("issue", -0.6), ("joy", 1.8), ("joyful", 1.9),
    ("junk", -1.8), ("kind", 0.8), ("lag", -0.9), ("laggy", -1.3), ("lame", -1.3), ("late", -0.7),
    ("laugh", 1.1), ("laughing", 1.1), ("lazy", -1.2), ("liar", -2.0), ("lie", -1.2),
    ("like", 0.7), ("liked", 1.0), ("loathe", -2.4), ("lol", 0.6), ("lonely", -1.3),
    ("lose", -0.8), ("loss", -1.0), ("lost", -0.8), ("lousy", -1.8), ("love", 2.2), ("loved", 2.2),
    ("lovely", 1.8), ("loving", 2.0), ("loyal", 1.0), ("lucky", 1.2), ("mad", -1.3),
    ("magnificent", 2.5), ("marvellous", 2.4), ("marvelous", 2.4), ("masterpiece", 2.6),
    ("meaningless", -1.5), ("mediocre", -1.1), ("meh", -0.8), ("mess", -1.3), ("messy", -1.1),
    ("miserable", -2.0), ("misleading", -1.6), ("nasty", -1.8), ("nice", 1.2), ("nightmare", -2.2),
    ("nightmarish", -2.2), ("noisy", -0.9), ("offensive", -1.8), ("ok", 0.3), ("okay", 0.3),
    ("optimistic", 1.2), ("outrageous", -2.0), ("outstanding", 2.5), ("overpriced", -1.5),
    ("overrated", -1.3), ("pain", -1.2), ("painful", -1.5), ("painless", 1.0), ("paradise", 1.6),
    ("passionate", 1.2), ("pathetic", -2.1), ("peaceful", 1.2), ("perfect", 2.4),
    ("perfectly", 1.8), ("phenomenal", 2.5), ("pleasant", 1.4), ("pleased", 1.4),
    ("pleasure", 1.5), ("pointless", -1.6), ("polite", 1.0), ("poor", -1.5), ("poorly", -1.5),
    ("positive", 1.2), ("powerful", 1.1), ("praise", 1.5), ("problem", -0.9),
    ("professional", 1.0), ("proud", 1.4), ("quick", 0.7), ("recommend", 1.5),
    ("recommendable", 1.4), ("recommended", 1.5), ("refund", -0.6), ("regret", -1.6),
    ("regrettable", -1.4), ("relaxed", 1.0), ("relaxing", 1.2), ("reliable", 1.3),
    ("remarkable", 1.7), ("responsive", 1.0), ("rewarding", 1.4), ("ridiculous", -1.5),
    ("ripoff", -2.1), ("robust", 1.1), ("rubbish", -1.9), ("rude", -1.7), ("ruin", -1.7),
    ("ruined", -1.9), ("sad", -1.4), ("sadly", -1.2), ("safe", 0.8), ("satisfaction", 1.3),
    ("satisfied", 1.3), ("satisfying", 1.4), ("scam", -2.4), ("scared", -1.2), ("scary", -1.2),
    ("seamless", 1.3), ("secure", 0.8), ("shame", -1.3), ("shameful", -1.8), ("sick", -1.1),
    ("silly", -0.8), ("sloppy", -1.3), ("slow", -0.8), ("smart", 1.1), ("smelly", -1.3),
    ("smile", 1.2), ("smiling", 1.3), ("smooth", 1.0), ("soggy", -1.1), ("solid", 0.9),
    ("sorry", -0.6), ("spacious", 0.9), ("spectacular", 2.4), ("spotless", 1.3), ("stable", 0.8),
    ("stale", -1.1), ("stress", -1.1), ("stressful", -1.4), ("strong", 0.7), ("stunning", 2.2),
    ("stupid", -1.8), ("sublime", 2.3), ("success", 1.4), ("successful", 1.5), ("suck", -1.8),
    ("sucked", -1.8), ("sucks", -2.0), ("superb", 2.5), ("superior", 1.5), ("tasty", 1.3),
    ("tedious", -1.4), ("terrible", -2.5), ("terribly", -2.3), ("terrific", 2.3),
    ("terrifying", -1.9), ("thank", 1.0), ("thankful", 1.4), ("thanks", 1.0), ("thrilled", 2.2),
    ("thriving", 1.5), ("tidy", 0.9), ("tired", -0.7), ("tiresome", -1.3), ("top-notch", 2.0),
    ("touching", 1.1), ("toxic", -1.8), ("tragedy", -1.8), ("tragic", -1.8), ("trash", -1.9),
    ("trouble", -1.0), ("trust", 0.9), ("trustworthy", 1.3), ("ugh", -1.2), ("ugly", -1.6),
    ("unacceptable", -2.1), ("unbearable", -2.1), ("uncomfortable", -1.2), ("underwhelming", -1.4),
    ("unfortunate", -1.1), ("unfortunately", -1.0), ("unfriendly", -1.4), ("unhappy", -1.6),
    ("unhelpful", -1.5), ("unpleasant", -1.5), ("unreliable", -1.5), ("unstable", -1.1),
    ("unusable", -2.0), ("upset", -1.5), ("useful", 1.2), ("useless", -2.0), ("valuable", 1.3),
    ("warm", 0.8), ("waste", -1.7), ("wasted", -1.7), ("weak", -1.0), ("welcome", 0.9),
    ("welcoming", 1.2), ("well-made", 1.5), ("win", 1.3), ("winner", 1.5), ("wins", 1.3),
    ("wise", 1.0), ("won", 1.0), ("wonderful", 2.5), ("wonderfully", 2.2), ("worried", -1.1),
    ("worry", -1.0), ("worse", -1.6), ("worst", -2.6), ("worth", 1.0), ("worthless", -2.1),
    ("worthlessness", -2.0), ("worthwhile", 1.3), ("wow", 1.3), ("wrong", -1.1), ("yay", 1.5),
    ("yuck", -1.5), ("yummy", 1.6),
];

/// The table entry of a lower-case word, if there is one.
pub fn entry(word: &str) -> Option<(&'static str, f64)> {
    WEIGHTS
        .binary_search_by(|(w, _)| (*w).cmp(word))
        .ok()
        .map(|i| WEIGHTS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_lower_case_and_bounded() {
        assert!(WEIGHTS.len() >= 300, "{}", WEIGHTS.len());
        assert!(WEIGHTS.windows(2).all(|p| p[0].0 < p[1].0));
        for &(word, w) in WEIGHTS {
            assert_eq!(word, word.to_lowercase());
            assert!((-3.0..=3.0).contains(&w) && w != 0.0, "{word}: {w}");
        }
    }

    #[test]
    fn lookup() {
        assert_eq!(entry("good"), Some(("good", 1.2)));
        assert_eq!(entry("terrible"), Some(("terrible", -2.5)));
        assert_eq!(entry("table"), None);
    }
}
