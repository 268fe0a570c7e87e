package caddyotp

import (
	"strconv"
	"strings"

	"golang.org/x/text/language"
)

// catalog holds every sentence of the pages and the default SMS, by language and key. Every
// language has every key (a test checks it); {name} marks a value filled in at render time.
var catalog = map[string]map[string]string{
	"en": {
		"title_no_phone":     "No phone for this account",
		"text_no_phone":      "Your account has no phone number for sign-in codes. Please ask the site’s administrator to add one.",
		"title_no_account":   "Sign in with your account first",
		"text_no_account":    "This site sends codes only to the phone of a signed-in account. Please sign in with your account first.",
		"sms":                "{code} is your {site} sign-in code.",
		"title_sign_in":      "Sign in",
		"sign_in_to":         "Sign in to {site}",
		"phone_intro":        "We will text a sign-in code to your phone.",
		"phone_label":        "Phone number",
		"phone_hint":         "With the country code, e.g. +1 201 555 0123",
		"send_code":          "Send code",
		"signed_out":         "You are signed out.",
		"title_code":         "Enter your code",
		"code_intro":         "We sent a {n}-digit code to {phone}.",
		"code_label":         "Sign-in code",
		"verify":             "Verify",
		"resend":             "Send a new code",
		"resend_in":          "Send a new code in {s} s",
		"other_number":       "Use another number",
		"err_not_phone":      "Enter a phone number with its country code, e.g. +1 201 555 0123.",
		"err_region":         "Codes cannot be sent to numbers in this country.",
		"err_wrong_one":      "That code is not right. 1 try left.",
		"err_wrong_many":     "That code is not right. {n} tries left.",
		"err_expired":        "This code has expired. Send a new code.",
		"title_exhausted":    "Too many wrong codes",
		"text_exhausted":     "This code can no longer be used. Please start again.",
		"title_flow_expired": "Sign-in expired",
		"text_flow_expired":  "This sign-in has expired. Please start again.",
		"title_wait":         "Please wait",
		"text_wait":          "Too many attempts. Please try again in {wait}.",
		"text_resend_wait":   "A new code can be sent in {wait}.",
		"seconds_one":        "1 second",
		"seconds_many":       "{n} seconds",
		"minutes_one":        "1 minute",
		"minutes_many":       "{n} minutes",
		"back_to_code":       "Back to the code",
		"title_not_sent":     "Code not sent",
		"text_not_sent":      "We could not send your code just now. Please try again in a moment.",
		"try_again":          "Try again",
		"title_unavailable":  "Sign-in unavailable",
		"text_unavailable":   "Sign-in is not working right now. Please try again in a minute.",
		"title_not_found":    "Page not found",
		"text_not_found":     "There is no such page.",
		"title_method":       "Not allowed",
		"text_method":        "This page cannot be used that way.",
		"title_too_large":    "Too much data",
		"text_too_large":     "The form sent more than this page accepts.",
		"title_bad_request":  "Bad request",
		"text_bad_request":   "The form could not be read.",
		"title_form_expired": "Form expired",
		"text_form_expired":  "This form is out of date or came from another site. Please start again.",
		"start_again":        "Start again",
		"title_sign_out":     "Sign out",
		"sign_out_intro":     "Sign out of {site} on this browser.",
		"sign_out":           "Sign out",
	},
	"de": {
		"title_no_phone":     "Keine Telefonnummer für dieses Konto",
		"text_no_phone":      "Für Ihr Konto ist keine Telefonnummer für Anmeldecodes hinterlegt. Bitte wenden Sie sich an die Betreiber der Website.",
		"title_no_account":   "Bitte zuerst mit Ihrem Konto anmelden",
		"text_no_account":    "Diese Website sendet Codes nur an die Telefonnummer eines angemeldeten Kontos. Bitte melden Sie sich zuerst mit Ihrem Konto an.",
		"sms":                "{code} ist Ihr Anmeldecode für {site}.",
		"title_sign_in":      "Anmelden",
		"sign_in_to":         "Bei {site} anmelden",
		"phone_intro":        "Wir senden Ihnen einen Anmeldecode per SMS.",
		"phone_label":        "Telefonnummer",
		"phone_hint":         "Mit Ländervorwahl, z. B. +49 30 123456",
		"send_code":          "Code senden",
		"signed_out":         "Sie sind abgemeldet.",
		"title_code":         "Code eingeben",
		"code_intro":         "Wir haben einen {n}-stelligen Code an {phone} gesendet.",
		"code_label":         "Anmeldecode",
		"verify":             "Bestätigen",
		"resend":             "Neuen Code senden",
		"resend_in":          "Neuer Code in {s} s",
		"other_number":       "Andere Nummer verwenden",
		"err_not_phone":      "Bitte eine Telefonnummer mit Ländervorwahl eingeben, z. B. +49 30 123456.",
		"err_region":         "An Nummern in diesem Land können keine Codes gesendet werden.",
		"err_wrong_one":      "Der Code ist nicht richtig. Noch 1 Versuch.",
		"err_wrong_many":     "Der Code ist nicht richtig. Noch {n} Versuche.",
		"err_expired":        "Dieser Code ist abgelaufen. Fordern Sie einen neuen Code an.",
		"title_exhausted":    "Zu viele falsche Codes",
		"text_exhausted":     "Dieser Code kann nicht mehr verwendet werden. Bitte beginnen Sie von vorn.",
		"title_flow_expired": "Anmeldung abgelaufen",
		"text_flow_expired":  "Diese Anmeldung ist abgelaufen. Bitte beginnen Sie von vorn.",
		"title_wait":         "Bitte warten",
		"text_wait":          "Zu viele Versuche. Bitte versuchen Sie es in {wait} erneut.",
		"text_resend_wait":   "Ein neuer Code kann in {wait} gesendet werden.",
		"seconds_one":        "1 Sekunde",
		"seconds_many":       "{n} Sekunden",
		"minutes_one":        "1 Minute",
		"minutes_many":       "{n} Minuten",
		"back_to_code":       "Zurück zum Code",
		"title_not_sent":     "Code nicht gesendet",
		"text_not_sent":      "Wir konnten Ihren Code gerade nicht senden. Bitte versuchen Sie es gleich noch einmal.",
		"try_again":          "Erneut versuchen",
		"title_unavailable":  "Anmeldung nicht verfügbar",
		"text_unavailable":   "Die Anmeldung funktioniert gerade nicht. Bitte versuchen Sie es in einer Minute erneut.",
		"title_not_found":    "Seite nicht gefunden",
		"text_not_found":     "Diese Seite gibt es nicht.",
		"title_method":       "Nicht erlaubt",
		"text_method":        "Diese Seite kann so nicht verwendet werden.",
		"title_too_large":    "Zu viele Daten",
		"text_too_large":     "Das Formular hat mehr gesendet, als diese Seite annimmt.",
		"title_bad_request":  "Ungültige Anfrage",
		"text_bad_request":   "Das Formular konnte nicht gelesen werden.",
		"title_form_expired": "Formular abgelaufen",
		"text_form_expired":  "Dieses Formular ist veraltet oder stammt von einer anderen Website. Bitte beginnen Sie von vorn.",
		"start_again":        "Von vorn beginnen",
		"title_sign_out":     "Abmelden",
		"sign_out_intro":     "Auf diesem Browser von {site} abmelden.",
		"sign_out":           "Abmelden",
	},
	"es": {
		"title_no_phone":     "Esta cuenta no tiene teléfono",
		"text_no_phone":      "Tu cuenta no tiene un número de teléfono para los códigos de acceso. Pide al administrador del sitio que añada uno.",
		"title_no_account":   "Inicia sesión con tu cuenta primero",
		"text_no_account":    "Este sitio solo envía códigos al teléfono de una cuenta con la sesión iniciada. Inicia sesión con tu cuenta primero.",
		"sms":                "{code} es tu código de acceso a {site}.",
		"title_sign_in":      "Iniciar sesión",
		"sign_in_to":         "Iniciar sesión en {site}",
		"phone_intro":        "Te enviaremos un código de acceso por SMS.",
		"phone_label":        "Número de teléfono",
		"phone_hint":         "Con el prefijo del país, p. ej. +34 912 345 678",
		"send_code":          "Enviar código",
		"signed_out":         "Has cerrado la sesión.",
		"title_code":         "Introduce tu código",
		"code_intro":         "Hemos enviado un código de {n} dígitos al {phone}.",
		"code_label":         "Código de acceso",
		"verify":             "Verificar",
		"resend":             "Enviar un código nuevo",
		"resend_in":          "Código nuevo en {s} s",
		"other_number":       "Usar otro número",
		"err_not_phone":      "Introduce un número de teléfono con el prefijo del país, p. ej. +34 912 345 678.",
		"err_region":         "No se pueden enviar códigos a números de este país.",
		"err_wrong_one":      "El código no es correcto. Te queda 1 intento.",
		"err_wrong_many":     "El código no es correcto. Te quedan {n} intentos.",
		"err_expired":        "Este código ha caducado. Pide un código nuevo.",
		"title_exhausted":    "Demasiados códigos incorrectos",
		"text_exhausted":     "Este código ya no se puede usar. Vuelve a empezar.",
		"title_flow_expired": "Inicio de sesión caducado",
		"text_flow_expired":  "Este inicio de sesión ha caducado. Vuelve a empezar.",
		"title_wait":         "Espera un momento",
		"text_wait":          "Demasiados intentos. Vuelve a intentarlo dentro de {wait}.",
		"text_resend_wait":   "Podrás pedir un código nuevo dentro de {wait}.",
		"seconds_one":        "1 segundo",
		"seconds_many":       "{n} segundos",
		"minutes_one":        "1 minuto",
		"minutes_many":       "{n} minutos",
		"back_to_code":       "Volver al código",
		"title_not_sent":     "Código no enviado",
		"text_not_sent":      "No hemos podido enviar tu código. Vuelve a intentarlo en un momento.",
		"try_again":          "Reintentar",
		"title_unavailable":  "Inicio de sesión no disponible",
		"text_unavailable":   "El inicio de sesión no funciona ahora mismo. Vuelve a intentarlo en un minuto.",
		"title_not_found":    "Página no encontrada",
		"text_not_found":     "Esta página no existe.",
		"title_method":       "No permitido",
		"text_method":        "Esta página no se puede usar así.",
		"title_too_large":    "Demasiados datos",
		"text_too_large":     "El formulario ha enviado más de lo que acepta esta página.",
		"title_bad_request":  "Solicitud incorrecta",
		"text_bad_request":   "No se ha podido leer el formulario.",
		"title_form_expired": "Formulario caducado",
		"text_form_expired":  "Este formulario está caducado o viene de otro sitio. Vuelve a empezar.",
		"start_again":        "Volver a empezar",
		"title_sign_out":     "Cerrar sesión",
		"sign_out_intro":     "Cerrar la sesión de {site} en este navegador.",
		"sign_out":           "Cerrar sesión",
	},
	"fr": {
		"title_no_phone":     "Aucun téléphone pour ce compte",
		"text_no_phone":      "Votre compte n’a pas de numéro de téléphone pour les codes de connexion. Demandez à l’administrateur du site d’en ajouter un.",
		"title_no_account":   "Connectez-vous d’abord avec votre compte",
		"text_no_account":    "Ce site n’envoie de codes qu’au téléphone d’un compte connecté. Connectez-vous d’abord avec votre compte.",
		"sms":                "{code} est votre code de connexion à {site}.",
		"title_sign_in":      "Connexion",
		"sign_in_to":         "Connexion à {site}",
		"phone_intro":        "Nous allons vous envoyer un code de connexion par SMS.",
		"phone_label":        "Numéro de téléphone",
		"phone_hint":         "Avec l’indicatif du pays, p. ex. +33 1 23 45 67 89",
		"send_code":          "Envoyer le code",
		"signed_out":         "Vous êtes déconnecté.",
		"title_code":         "Saisissez votre code",
		"code_intro":         "Nous avons envoyé un code à {n} chiffres au {phone}.",
		"code_label":         "Code de connexion",
		"verify":             "Valider",
		"resend":             "Envoyer un nouveau code",
		"resend_in":          "Nouveau code dans {s} s",
		"other_number":       "Utiliser un autre numéro",
		"err_not_phone":      "Saisissez un numéro de téléphone avec l’indicatif du pays, p. ex. +33 1 23 45 67 89.",
		"err_region":         "Impossible d’envoyer des codes aux numéros de ce pays.",
		"err_wrong_one":      "Ce code n’est pas le bon. Il reste 1 essai.",
		"err_wrong_many":     "Ce code n’est pas le bon. Il reste {n} essais.",
		"err_expired":        "Ce code a expiré. Demandez un nouveau code.",
		"title_exhausted":    "Trop de codes erronés",
		"text_exhausted":     "Ce code ne peut plus être utilisé. Veuillez recommencer.",
		"title_flow_expired": "Connexion expirée",
		"text_flow_expired":  "Cette connexion a expiré. Veuillez recommencer.",
		"title_wait":         "Veuillez patienter",
		"text_wait":          "Trop de tentatives. Réessayez dans {wait}.",
		"text_resend_wait":   "Un nouveau code pourra être envoyé dans {wait}.",
		"seconds_one":        "1 seconde",
		"seconds_many":       "{n} secondes",
		"minutes_one":        "1 minute",
		"minutes_many":       "{n} minutes",
		"back_to_code":       "Retour au code",
		"title_not_sent":     "Code non envoyé",
		"text_not_sent":      "Nous n’avons pas pu envoyer votre code. Réessayez dans un instant.",
		"try_again":          "Réessayer",
		"title_unavailable":  "Connexion indisponible",
		"text_unavailable":   "La connexion ne fonctionne pas pour le moment. Réessayez dans une minute.",
		"title_not_found":    "Page introuvable",
		"text_not_found":     "Cette page n’existe pas.",
		"title_method":       "Non autorisé",
		"text_method":        "Cette page ne peut pas être utilisée ainsi.",
		"title_too_large":    "Trop de données",
		"text_too_large":     "Le formulaire a envoyé plus que cette page n’accepte.",
		"title_bad_request":  "Requête invalide",
		"text_bad_request":   "Le formulaire n’a pas pu être lu.",
		"title_form_expired": "Formulaire expiré",
		"text_form_expired":  "Ce formulaire est périmé ou vient d’un autre site. Veuillez recommencer.",
		"start_again":        "Recommencer",
		"title_sign_out":     "Déconnexion",
		"sign_out_intro":     "Se déconnecter de {site} sur ce navigateur.",
		"sign_out":           "Se déconnecter",
	},
}

// languages are the catalog's languages, English first: the fallback.
var languages = []language.Tag{language.English, language.German, language.Spanish, language.French}

var languageMatcher = language.NewMatcher(languages)

// pickLanguage returns the catalog language for an Accept-Language header.
func pickLanguage(acceptLanguage string) string {
	_, i := language.MatchStrings(languageMatcher, acceptLanguage)
	base, _ := languages[i].Base()
	return base.String()
}

// words are one language's sentences.
type words map[string]string

// Say fills {name} placeholders of key's sentence from pairs of name, value.
func (w words) Say(key string, pairs ...string) string {
	s := w[key]
	for i := 0; i+1 < len(pairs); i += 2 {
		s = strings.ReplaceAll(s, "{"+pairs[i]+"}", pairs[i+1])
	}
	return s
}

// count picks the singular or plural form of key (key_one, key_many) for n.
func (w words) count(key string, n int) string {
	if n == 1 {
		return w[key+"_one"]
	}
	return w.Say(key+"_many", "n", strconv.Itoa(n))
}

// duration says d in whole seconds under a minute, else whole minutes, rounded up.
func (w words) duration(secs int) string {
	if secs < 60 {
		return w.count("seconds", secs)
	}
	return w.count("minutes", (secs+59)/60)
}
