-- A refresh token spent by a refresh (rotated) is told apart from one revoked by a sign-out or
-- by the end of a user's sessions (a password set, the account moved or deactivated): only a
-- spent one coming back is a copy in other hands, which ends every session of the user. A
-- signed-out token sent again a minute later ended the user's other sessions, and an old stolen
-- token did so after every password change (probe). Rows revoked before are not marked spent.
ALTER TABLE refresh_tokens ADD COLUMN spent boolean NOT NULL DEFAULT false;
