import unicodedata

from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError

from notifications.forms import email_address_clean, email_field

# Letters of other alphabets drawn exactly like a Latin letter, in upper or lower case, mapped to that Latin
# letter. Keys are lower case (the skeleton is case-folded first: a capital counts when it is the identical one,
# Cyrillic U+041D looks like H) and decomposed, so accents are compared apart and Cyrillic U+0451 (U+0435 with a
# diaeresis) meets Latin "ë". Only identical shapes are listed: "0"/"o" or "rn"/"m" are similar, not the same, and
# refusing them would turn away honest names. Written as escapes: the letters themselves would be the very trap.
LOOKALIKES = str.maketrans(
    {
        # Cyrillic
        "\u0430": "a",  # Cyrillic A
        "\u0432": "b",  # Cyrillic Ve: its capital is drawn as B
        "\u0435": "e",  # Cyrillic Ie
        "\u043a": "k",  # Cyrillic Ka: its capital is drawn as K
        "\u043c": "m",  # Cyrillic Em: its capital is drawn as M
        "\u043d": "h",  # Cyrillic En: its capital is drawn as H
        "\u043e": "o",  # Cyrillic O
        "\u0440": "p",  # Cyrillic Er
        "\u0441": "c",  # Cyrillic Es
        "\u0442": "t",  # Cyrillic Te: its capital is drawn as T
        "\u0443": "y",  # Cyrillic U
        "\u0445": "x",  # Cyrillic Ha
        "\u0455": "s",  # Cyrillic Dze
        "\u0456": "i",  # Cyrillic Byelorussian-Ukrainian I
        "\u0458": "j",  # Cyrillic Je
        "\u04bb": "h",  # Cyrillic Shha
        "\u04cf": "l",  # Cyrillic Palochka, and its capital U+04C0 that folds to it
        "\u04af": "y",  # Cyrillic Straight U: its capital is drawn as Y
        "\u0501": "d",  # Cyrillic Komi De
        "\u051b": "q",  # Cyrillic Qa
        "\u051d": "w",  # Cyrillic We
        # Greek
        "\u03b1": "a",  # Greek Alpha: its capital is drawn as A
        "\u03b2": "b",  # Greek Beta: its capital is drawn as B
        "\u03b5": "e",  # Greek Epsilon: its capital is drawn as E
        "\u03b6": "z",  # Greek Zeta: its capital is drawn as Z
        "\u03b7": "h",  # Greek Eta: its capital is drawn as H
        "\u03b9": "i",  # Greek Iota: its capital is drawn as I
        "\u03ba": "k",  # Greek Kappa: its capital is drawn as K
        "\u03bc": "m",  # Greek Mu: its capital is drawn as M
        "\u03bd": "n",  # Greek Nu: its capital is drawn as N
        "\u03bf": "o",  # Greek Omicron
        "\u03c1": "p",  # Greek Rho: its capital is drawn as P
        "\u03c4": "t",  # Greek Tau: its capital is drawn as T
        "\u03c5": "y",  # Greek Upsilon: its capital is drawn as Y
        "\u03c7": "x",  # Greek Chi: its capital is drawn as X
        "\u03f3": "j",  # Greek Letter Yot
        # Armenian
        "\u0585": "o",  # Armenian Oh
        "\u057d": "u",  # Armenian Seh
        "\u0570": "h",  # Armenian Ho
        "\u0578": "n",  # Armenian Vo
        # Latin letters drawn like plainer ones
        "\u0251": "a",  # Latin Alpha
        "\u0261": "g",  # Latin Script G
    }
)


def username_skeleton(username: str) -> str:
    """What a username looks like, for telling look-alikes apart: NFKC (fullwidth and compatibility forms become
    plain letters), case-folded, decomposed, and every letter in LOOKALIKES replaced by the Latin letter it is
    drawn like. Two usernames with the same skeleton read the same on a page."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())
    return unicodedata.normalize("NFD", folded).translate(LOOKALIKES)


class SignupForm(UserCreationForm):
    """Username, email address and password. The address is where notifications are mailed once verified
    (the signup view mails the link); it must not belong to another account, in any case.

    The username is normalised (NFKC, as Django's UsernameField does) and refused when it reads the same as an
    existing one: same letters in another case, or look-alike letters from another alphabet (`learner` spelt with
    the Cyrillic U+0430 for its a, against `learner`). No one may pass for another account on a page.
    """

    error_messages = {
        **UserCreationForm.error_messages,
        "confusable_username": (
            "This username looks the same as one that is already taken: it differs only in upper/lower case or in "
            "letters from another alphabet that look alike. Choose a username that reads differently."
        ),
    }

    email = email_field()

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")

    def clean_email(self) -> str:
        return email_address_clean(email=self.cleaned_data["email"])

    def clean_username(self) -> str | None:
        username = super().clean_username()  # Django's check: taken, in any ASCII case
        if not username:
            return username
        username = unicodedata.normalize("NFKC", username)
        skeleton = username_skeleton(username)
        # Every account is compared: the skeleton is not stored. Cheap at a course's scale (a few thousand names).
        for existing in get_user_model().objects.values_list("username", flat=True).iterator():
            if username_skeleton(existing) == skeleton:
                raise ValidationError(self.error_messages["confusable_username"], code="confusable_username")
        return username
