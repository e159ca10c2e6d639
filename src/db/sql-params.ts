/**
 * Collects the values of a raw SQL statement and hands out their placeholders, so a statement
 * assembled from parts (src/db/sql.ts) numbers them correctly: `${p.add(userId, 'uuid')}` → `$3::uuid`.
 * Values always travel as parameters, never inside the text.
 */
export class SqlParams {
  readonly values: unknown[] = [];

  add(value: unknown, cast?: string): string {
    this.values.push(value);
    return cast ? `$${this.values.length}::${cast}` : `$${this.values.length}`;
  }
}
