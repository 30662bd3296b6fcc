"""Forms for the account pages: sign-up and API key names."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import UserCreationForm

from jobs.accounts import email_taken

EMAIL_TAKEN = (
    "An account with this email address already exists (capital letters make no difference). "
    "Log in to that account instead."
)


class SignUpForm(UserCreationForm):
    email = forms.EmailField(help_text="Where we can reach you about your account.")

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")

    def clean_email(self) -> str:
        # One person, one account (and one set of starting credits): mail
        # reaches Marketer1@… and marketer1@… alike, so they are one address.
        email = self.cleaned_data["email"].strip()
        if email_taken(email):
            raise forms.ValidationError(EMAIL_TAKEN, code="email_taken")
        return email


class ApiKeyNameForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="Something to tell it apart later, such as the tool that will use it.",
        error_messages={"required": "Give the key a name, such as the tool that will use it."},
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the key a name, such as the tool that will use it.")
        return name
