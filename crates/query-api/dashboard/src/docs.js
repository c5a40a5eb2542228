// The API reference: Swagger UI over the merged document every service's handlers generate.
// "Try it out" calls the API on this origin; paste an access token under "Authorize".
/* global SwaggerUIBundle */
window.addEventListener('DOMContentLoaded', () => {
  SwaggerUIBundle({ url: '/api/v1/openapi.json', dom_id: '#api', deepLinking: true, tryItOutEnabled: false });
});
