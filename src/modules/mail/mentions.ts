/**
 * Other people a mail names (mail.templates.ts MailTemplateData): the administrator or support
 * employee who acted (`actorId` beside `actorName`) and the administrators a block notice lists
 * (`administrators[].id`). An outbox row records them (`mentions`) and keeps the data it was
 * rendered from, so erasing one of them renders a mail still waiting again without them.
 */

type Named = { actorId?: unknown; actorName?: unknown; administrators?: unknown };

const administratorsOf = (data: Named): { id?: unknown }[] => (Array.isArray(data.administrators) ? data.administrators : []);

/** The ids of the people `data` names besides its recipient. */
export function mentionsOf(data: object): string[] {
  const named = data as Named;
  const ids = [named.actorId, ...administratorsOf(named).map((a) => a.id)];
  return [...new Set(ids.filter((id): id is string => typeof id === 'string'))];
}

/** `data` as it would have been without the person `id`: the mail says "your administrator" or lists the others. */
export function withoutMention(data: object, id: string): object {
  const named = { ...data } as Named & Record<string, unknown>;
  if (named.actorId === id) {
    delete named.actorId;
    delete named.actorName;
  }
  if (Array.isArray(named.administrators)) named.administrators = administratorsOf(named).filter((a) => a.id !== id);
  return named;
}
