-- Sign-ups sent twice (the back button, a double click): a repeat of a sign-up still
-- waiting, with the same login and the same address, gets the same answer as the
-- first, and no second email. A sign-up whose address was in use holds its login with
-- a reservation; it must remember the address too, or its repeat would answer "login
-- taken" where a fresh sign-up's repeat answers "filed", telling whether the address
-- has an account. Reservations made before this version have none: their repeats
-- still answer "taken".
ALTER TABLE login_reservations ADD COLUMN email_key TEXT;
