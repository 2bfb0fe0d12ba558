-- Usernames are unique whatever their case: "ADMIN" beside "admin" is another account that a
-- list, an audit line or a colleague reads as the same person. Log-in stays exact (the name as
-- created); creating or importing a name that differs from an existing one only in case is
-- refused as taken (app.users.service, app.erp.users). This index backs those checks against
-- two creations at once. (A database that already holds two such names fails here, naming
-- them: rename one first.)
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));
