// Makes the code UI's database with CloudCLI's own code and seeds its one account; run as the
// agent by the code UI's install. Arguments: CloudCLI's database modules, the account's name.
import { randomBytes } from 'node:crypto';

const [modules, user] = process.argv.slice(2);
const { initializeDatabase } = await import(`${modules}/init-db.js`);
const { getConnection } = await import(`${modules}/connection.js`);
await initializeDatabase();
const alphabet = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const unusable = '$2b$12$' + Array.from(randomBytes(53), (b) => alphabet[b % alphabet.length]).join('');
const db = getConnection();
db.transaction(() => {
  db.prepare('DELETE FROM users WHERE username != ?').run(user);
  db.prepare(
    'INSERT INTO users (username, password_hash, has_completed_onboarding) VALUES (?, ?, 1) ' +
      'ON CONFLICT(username) DO UPDATE SET password_hash = excluded.password_hash, is_active = 1, has_completed_onboarding = 1',
  ).run(user, unusable);
})();
db.close();
