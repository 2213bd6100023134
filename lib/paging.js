'use strict';
// The async-iteration shapes of the modern API: the Azure SDK's PagedAsyncIterableIterator
// (`next()`, `[Symbol.asyncIterator]()`, `byPage({ continuationToken, maxPageSize })`) and
// `Query[Symbol.asyncIterator]`. Plain JS only because napi-rs cannot create async generator
// objects; there is no I/O here: every page is read by the addon (`fetchPage`, `query.next`).

/** `fetchPage(token, maxPageSize, signal)` (native) resolves with `{ items, continuationToken }`. */
function paged(fetchPage, signal, maxPageSize) {
  async function* byPage(settings) {
    let token = settings?.continuationToken ?? undefined;
    const size = settings?.maxPageSize ?? maxPageSize;
    do {
      const { items, continuationToken } = await fetchPage(token, size, signal);
      items.continuationToken = continuationToken;
      yield items;
      token = continuationToken;
    } while (token);
  }
  return pagedIterator(byPage);
}

/** The Azure SDK's iterator over the items of `byPage(settings)`'s pages, with `byPage` itself. */
function pagedIterator(byPage) {
  async function* all() {
    for await (const page of byPage()) yield* page;
  }
  const items = all();
  return {
    next: () => items.next(),
    return: (value) => items.return(value),
    [Symbol.asyncIterator]() {
      return this;
    },
    byPage,
  };
}

/** Items of every remaining page of a `Query`, following its continuation token. */
async function* queryItems() {
  while (this.hasMoreResults) {
    const { result } = await this.next();
    if (Array.isArray(result)) yield* result;
  }
}

function installQueryIterator(Query) {
  Object.defineProperty(Query.prototype, Symbol.asyncIterator, {
    value: queryItems,
    writable: true,
    configurable: true,
  });
}

exports.paged = paged;
exports.pagedIterator = pagedIterator;
exports.installQueryIterator = installQueryIterator;
