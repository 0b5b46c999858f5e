// Calls to the console's X-Ray API, on the page's own origin (the token, when there is one,
// rides in the cookie the page's first load set).

/** An answer that was not a 2xx: `status` 0 means the API could not be reached at all. */
export class ApiError extends Error {
  constructor(status, message, kind = "") {
    super(message);
    this.status = status;
    this.kind = kind;
  }
}

/** POST one X-Ray operation ("/ServiceGraph", ...) and return its decoded JSON answer. */
export async function call(path, body, signal) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      signal,
    });
  } catch (exc) {
    if (exc && exc.name === "AbortError") throw exc;
    throw new ApiError(0, "the console's API is unreachable");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = (data && (data.message || data.Message)) || `HTTP ${response.status}`;
    throw new ApiError(response.status, String(message), (data && data.__type) || "");
  }
  if (data === null || typeof data !== "object") {
    throw new ApiError(response.status, "the API answered with something other than JSON");
  }
  return data;
}

/** The time range [start, end] in epoch seconds for the last `seconds`. */
export function lastSeconds(seconds) {
  const end = Date.now() / 1000;
  return { StartTime: end - seconds, EndTime: end };
}
