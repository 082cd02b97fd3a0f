"""Language of a text: offline detection with py3langid (a Naive Bayes byte n-gram model
shipped in the wheel, about 5 MB; one classification takes well under a millisecond once the
model is loaded, which happens once per process and only when a text is first classified), and
the English names of ISO 639-1 codes for prompts ("Write in Russian.").

py3langid rather than lingua: lingua's models are ~100 MB and loading them took tens of seconds
here, and on short chunks it confused Russian with Ukrainian, which py3langid did not.
Detection is restricted to the languages below (ISO 639-1 codes of py3langid's model), so a
code is always a two-letter one with a name (py3langid alone also answers "wuu" or "zxx").
"""

from __future__ import annotations

from functools import lru_cache

LANGUAGE_NAMES: dict[str, str] = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "as": "Assamese", "az": "Azerbaijani",
    "be": "Belarusian", "bg": "Bulgarian", "bn": "Bengali", "br": "Breton", "bs": "Bosnian",
    "ca": "Catalan", "cs": "Czech", "cy": "Welsh", "da": "Danish", "de": "German", "el": "Greek",
    "en": "English", "eo": "Esperanto", "es": "Spanish", "et": "Estonian", "eu": "Basque",
    "fa": "Persian", "fi": "Finnish", "fo": "Faroese", "fr": "French", "fy": "Western Frisian",
    "ga": "Irish", "gd": "Scottish Gaelic", "gl": "Galician", "gu": "Gujarati", "ha": "Hausa",
    "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "ht": "Haitian Creole", "hu": "Hungarian",
    "hy": "Armenian", "id": "Indonesian", "ig": "Igbo", "is": "Icelandic", "it": "Italian",
    "ja": "Japanese", "jv": "Javanese", "ka": "Georgian", "kk": "Kazakh", "km": "Khmer",
    "kn": "Kannada", "ko": "Korean", "ku": "Kurdish", "ky": "Kyrgyz", "la": "Latin",
    "lb": "Luxembourgish", "lg": "Ganda", "ln": "Lingala", "lo": "Lao", "lt": "Lithuanian",
    "lv": "Latvian", "mg": "Malagasy", "mk": "Macedonian", "ml": "Malayalam", "mn": "Mongolian",
    "mr": "Marathi", "ms": "Malay", "mt": "Maltese", "my": "Burmese", "ne": "Nepali",
    "nl": "Dutch", "nn": "Norwegian Nynorsk", "no": "Norwegian", "oc": "Occitan", "om": "Oromo",
    "or": "Odia", "pa": "Punjabi", "pl": "Polish", "ps": "Pashto", "pt": "Portuguese",
    "qu": "Quechua", "ro": "Romanian", "ru": "Russian", "rw": "Kinyarwanda", "sa": "Sanskrit",
    "se": "Northern Sami", "si": "Sinhala", "sk": "Slovak", "sl": "Slovenian", "sn": "Shona",
    "so": "Somali", "sq": "Albanian", "sr": "Serbian", "st": "Southern Sotho", "sv": "Swedish",
    "sw": "Swahili", "ta": "Tamil", "te": "Telugu", "tg": "Tajik", "th": "Thai", "tk": "Turkmen",
    "tl": "Tagalog", "tr": "Turkish", "tt": "Tatar", "ug": "Uyghur", "uk": "Ukrainian",
    "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese", "wa": "Walloon", "xh": "Xhosa",
    "yo": "Yoruba", "zh": "Chinese", "zu": "Zulu",
}


def language_name(code: str) -> str:
    """The English name of an ISO 639-1 code ("ru" -> "Russian"); unknown codes are returned as given."""
    return LANGUAGE_NAMES.get(code, code)


def check_code(code: str, where: str) -> str:
    """``code`` if it is a known ISO 639-1 code, else a ValueError naming ``where``."""
    if code not in LANGUAGE_NAMES:
        raise ValueError(f"{where}: unknown language code {code!r} (ISO 639-1, e.g. en, de, ru, zh)")
    return code


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE)
    ident.set_languages([c for c in ident.labels if c in LANGUAGE_NAMES])
    return ident


def detect(text: str) -> str:
    """The ISO 639-1 code of the language ``text`` is written in."""
    lang, _ = _identifier().classify(text)
    return lang


_CODES = {name: code for code, name in LANGUAGE_NAMES.items()}


def language_code(name: str) -> str:
    """The ISO 639-1 code of a language name ("Russian" -> "ru"); a code is returned as given."""
    return _CODES.get(name, name)
