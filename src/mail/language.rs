//! Which language a message is written in, so rules can route it and an unregistered
//! sender is answered in its own language. A guess: `None` when the text is too short or
//! too mixed to tell.

use whatlang::Lang;

/// Only the start of the text is looked at: enough to tell, and cheap on large bodies.
const SAMPLE_BYTES: usize = 2048;

/// The ISO 639-1 code (`"it"`) of the language of `subject` and `text`, when reliable.
pub fn detect(subject: &str, text: &str) -> Option<String> {
    let mut end = text.len().min(SAMPLE_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let sample = format!("{subject}\n{}", &text[..end]);
    let info = whatlang::detect(&sample)?;
    if !info.is_reliable() {
        return None;
    }
    Some(iso_639_1(info.lang()).to_string())
}

/// whatlang names languages by ISO 639-3; templates and accounts use the two-letter codes.
fn iso_639_1(lang: Lang) -> &'static str {
    match lang {
        Lang::Eng => "en",
        Lang::Ita => "it",
        Lang::Fra => "fr",
        Lang::Deu => "de",
        Lang::Spa => "es",
        Lang::Por => "pt",
        Lang::Nld => "nl",
        Lang::Pol => "pl",
        Lang::Ron => "ro",
        Lang::Swe => "sv",
        Lang::Dan => "da",
        Lang::Nob => "no",
        Lang::Fin => "fi",
        Lang::Ces => "cs",
        Lang::Slk => "sk",
        Lang::Hun => "hu",
        Lang::Ell => "el",
        Lang::Tur => "tr",
        Lang::Rus => "ru",
        Lang::Ukr => "uk",
        Lang::Ara => "ar",
        Lang::Heb => "he",
        Lang::Jpn => "ja",
        Lang::Cmn => "zh",
        Lang::Kor => "ko",
        other => other.code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_the_desk_languages_apart() {
        assert_eq!(
            detect(
                "Sito non raggiungibile",
                "Buongiorno, da questa mattina il nostro sito non è raggiungibile e la posta non funziona. Potete verificare?"
            )
            .as_deref(),
            Some("it")
        );
        assert_eq!(
            detect(
                "Site en panne",
                "Bonjour, depuis ce matin notre site est inaccessible et nous ne recevons plus de courriels. Pouvez-vous vérifier ?"
            )
            .as_deref(),
            Some("fr")
        );
        assert_eq!(
            detect(
                "Website down",
                "Hello, since this morning our website cannot be reached and we do not receive any mail. Could you please check?"
            )
            .as_deref(),
            Some("en")
        );
    }

    #[test]
    fn too_little_text_is_no_guess() {
        assert_eq!(detect("", "ok"), None);
    }
}
