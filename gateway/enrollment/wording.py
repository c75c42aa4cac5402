"""The enrollment page's words and messages in the page's language.

``PAGE_TEXT`` holds the words of the one enrollment page template (templates/pages/
enroll.html) in each language; ``page_text(lang)`` gives them, English when the language
has none.  A practice that wants other words can still put its own
templates/pages/<lang>/enroll.html beside it (gateway.enrollment.web.page_template).

The checks in gateway.enrollment.enroll (and the CSRF refusal in web.py) word their
messages in English; this module gives each one in another language, matched by its
English pattern (numbers carried over).  A message without a translation is shown in
English rather than not at all; tests/test_enrollment_language.py drives every message
through the Spanish page, so a changed English wording is noticed.
"""
from __future__ import annotations

import re

from gateway.enrollment.enroll import CLOSED

CLOSED_ES = {
    "unknown": "Este enlace de inscripción no es válido. Verifique que abrió el enlace "
               "completo de nuestro correo o llame al consultorio para pedir una "
               "invitación nueva.",
    "used": "Este enlace de inscripción ya se usó. Si ya se inscribió, puede escribirnos "
            "ahora. Si no, llame al consultorio.",
    "expired": "Este enlace de inscripción venció. Llame al consultorio para pedir una "
               "invitación nueva.",
    "void": "Este enlace de inscripción se reemplazó por una invitación más reciente. Use el "
            "enlace de nuestro correo más reciente.",
    "locked": "Este enlace de inscripción ya no funciona porque se escribió un número de "
              "cuenta equivocado demasiadas veces. Llame al consultorio para pedir una "
              "invitación nueva.",
    "unavailable": "No es posible inscribirse con este enlace. Llame al consultorio.",
}

_ES = [
    (r"Choose a password of at least (\d+) characters \(yours has (\d+)\)\.",
     "Elija una contraseña de al menos {0} caracteres (la suya tiene {1})."),
    (r"Choose a password of at most (\d+) characters\.",
     "Elija una contraseña de {0} caracteres como máximo."),
    (r"The two passwords do not match\. Type the same password twice\.",
     "Las dos contraseñas no coinciden. Escriba la misma contraseña dos veces."),
    (r"To enroll, tick \u201cI agree\u201d after reading the terms\.",
     "Para inscribirse, marque la casilla de aceptación después de leer las condiciones."),
    (r"The terms have changed since this page was opened\. Please read them again and "
     r"tick \u201cI agree\u201d\.",
     "Las condiciones cambiaron desde que abrió esta página. Léalas de nuevo y marque la "
     "casilla de aceptación."),
    (r"Enter your patient account number \(it is on your statements\)\.",
     "Escriba su número de cuenta de paciente (aparece en sus estados de cuenta)."),
    (r"That account number does not match our records\. Check it on your statement "
     r"\((\d+) tr(?:y|ies) left before this link stops working\)\.",
     lambda left: ("Ese número de cuenta no coincide con nuestros registros. Verifíquelo en "
                   "su estado de cuenta (" + ("le queda 1 intento" if left == "1" else
                                              f"le quedan {left} intentos")
                   + " antes de que este enlace deje de funcionar).")),
    (r"This form could not be checked .*",
     "No pudimos verificar este formulario (estaba abierto en otra ventana o las cookies "
     "están bloqueadas). Llénelo otra vez y envíelo."),
]
PAGE_TEXT = {
    "en": {
        "title": "Enroll in the patient portal",
        "heading": "Enroll in the {practice} patient portal",
        "emergency": "In an emergency, call 911.",
        "emergency_more": "The portal is not for emergencies or time-sensitive matters.",
        "office": "Office:",
        "correct_one": "Please correct this:",
        "correct_many": "Please correct these {count} things:",
        "intro": "To write to our care team by email, confirm your account number, choose a "
                 "password and accept the portal terms.",
        "intro_proxy": "You were invited to write to our care team for a patient you care "
                       "for. Enter the patient's account number, choose a password of your "
                       "own and accept the portal terms.",
        "account": "Patient account number",
        "account_hint": "It is printed on your statements from the practice.",
        "account_proxy": "The patient's account number",
        "account_hint_proxy": "It is printed on the patient's statements from the practice.",
        "password": "New password",
        "password_hint": "At least 12 characters. A few unrelated words make a strong "
                         "password that is easy to remember.",
        "confirm": "Type the new password again",
        "agree": "I have read the portal terms (version {version}) and I agree to them.",
        "submit": "Enroll",
    },
    "es": {
        "title": "Inscríbase en el portal del paciente",
        "heading": "Inscríbase en el portal del paciente de {practice}",
        "emergency": "En caso de emergencia, llame al 911.",
        "emergency_more": "El portal no es para emergencias ni para asuntos que no pueden "
                          "esperar.",
        "office": "Consultorio:",
        "correct_one": "Corrija lo siguiente:",
        "correct_many": "Corrija estos {count} puntos:",
        "intro": "Para escribirle a nuestro equipo de atención médica por correo "
                 "electrónico, confirme su número de cuenta, elija una contraseña y acepte "
                 "las condiciones del portal.",
        "intro_proxy": "Le invitamos a escribirle a nuestro equipo de atención médica en "
                       "nombre de un paciente a su cargo. Escriba el número de cuenta del "
                       "paciente, elija una contraseña propia y acepte las condiciones del "
                       "portal.",
        "account": "Número de cuenta de paciente",
        "account_hint": "Aparece en los estados de cuenta que le envía el consultorio.",
        "account_proxy": "Número de cuenta del paciente",
        "account_hint_proxy": "Aparece en los estados de cuenta del paciente que envía el "
                              "consultorio.",
        "password": "Contraseña nueva",
        "password_hint": "Al menos 12 caracteres. Unas cuantas palabras que no tengan "
                         "relación entre sí forman una contraseña segura y fácil de recordar.",
        "confirm": "Escriba otra vez la contraseña nueva",
        "agree": "Leí las condiciones del portal (versión {version}) y las acepto.",
        "submit": "Inscribirme",
    },
}


def page_text(lang: str) -> dict[str, str]:
    """The enrollment page's words in LANG (English when LANG has none)."""
    return PAGE_TEXT.get(lang, PAGE_TEXT["en"])


MESSAGES = {"es": [(re.compile(p, re.DOTALL), t) for p, t in _ES]}
CLOSED_TEXT = {"en": CLOSED, "es": CLOSED_ES}


def closed(lang: str, state: str) -> str:
    return CLOSED_TEXT.get(lang, CLOSED).get(state, CLOSED[state])


def say(lang: str, message: str) -> str:
    """MESSAGE (English) in LANG, or as it is when no translation matches."""
    for pattern, text in MESSAGES.get(lang, ()):
        m = pattern.fullmatch(message)
        if m:
            return text(*m.groups()) if callable(text) else text.format(*m.groups())
    return message


def errors(lang: str, found: dict[str, str]) -> dict[str, str]:
    return {key: say(lang, message) for key, message in found.items()}
