"""Request and response bodies of the auth endpoints (validation and OpenAPI components)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from messenger_core import storable_text


class CredentialsSchema(Schema):
    """A user name and a password (register and login)."""

    user_name = fields.String(required=True, validate=[validate.Length(min=1, max=255), storable_text],
                              metadata={"description": "Unique account name, 1..255 characters",
                                        "example": "vasya"})
    password = fields.String(required=True, load_only=True,
                             validate=[validate.Length(min=1, max=1024), storable_text],
                             metadata={"description": "1..1024 characters; stored only as a salted scrypt hash",
                                       "example": "correct horse battery staple"})


class RegisterSchema(CredentialsSchema):
    """A new account: the password needs at least ``AUTH_PASSWORD_MIN_LENGTH`` characters (checked by the handler)."""

    password = fields.String(required=True, load_only=True,
                             validate=[validate.Length(min=1, max=1024), storable_text],
                             metadata={"description": "AUTH_PASSWORD_MIN_LENGTH (default 8)..1024 characters; "
                                                      "stored only as a salted scrypt hash",
                                       "minLength": 8, "example": "correct horse battery staple"})


class SessionSchema(Schema):
    """A new session: send it back as ``Authorization: session_id <session_id>``."""

    session_id = fields.String(required=True, metadata={
        "description": "Session id, 32 lowercase hex characters; valid for AUTH_TOKEN_LIFETIME seconds",
        "example": "5f1c0a4e9b2d4c6f8a7e3d2b1c0f9e8d"})


SCHEMAS = {"AuthCredentials": CredentialsSchema, "AuthRegistration": RegisterSchema, "AuthSession": SessionSchema}
