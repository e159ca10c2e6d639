import { defineErrors } from '../../errors.js';

export const supportErrors = defineErrors({
  customer_number_taken: { status: 409, title: 'An organisation with this customer number already exists' },
  replacing_same_user: { status: 400, title: 'The new administrator cannot be the administrator they replace' },
});
