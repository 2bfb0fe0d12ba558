-- A password someone else chose is the user's to replace at the first sign-in: an ERP import's
-- one-time initial password (it stayed the user's password for good), the administrator's of
-- `tracecode brand create`, and one an administrator sets asking for it (POST /users, PATCH
-- /users/{id} `must_change_password`). Until the user changes it (POST /auth/password, which
-- clears this), the account reaches only its own password change and who it is (app.deps,
-- app.rebates.claims: 403 password_change_required).
ALTER TABLE users ADD COLUMN must_change_password boolean NOT NULL DEFAULT false;
